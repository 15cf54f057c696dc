#include "store_api.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <memory>
#include <vector>

#include "annal/server/event_json.h"
#include "annal/server/builtin_projections.h"
#include "console_files.h"

namespace annal::server {
namespace {

// The value of `name` in a query string ("a=1&b=2"), undecoded; nullopt if absent.
std::optional<std::string_view> parameter(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const std::size_t end = query.find('&');
    const std::string_view pair = query.substr(0, end);
    const std::size_t equals = pair.find('=');
    if (pair.substr(0, equals) == name) return equals == std::string_view::npos ? "" : pair.substr(equals + 1);
    if (end == std::string_view::npos) break;
    query.remove_prefix(end + 1);
  }
  return std::nullopt;
}

std::optional<std::uint64_t> whole_number(std::string_view text) {
  std::uint64_t value = 0;
  const auto parsed = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || parsed.ec != std::errc() || parsed.ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

// "%2F" and the like in a path segment; nullopt for a broken escape.
std::optional<std::string> percent_decoded(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    unsigned value = 0;
    if (i + 2 >= text.size()) return std::nullopt;
    const auto parsed = std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16);
    if (parsed.ec != std::errc() || parsed.ptr != text.data() + i + 3) return std::nullopt;
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

std::string receipt_json(std::string_view stream, const engine::Receipt& receipt) {
  return "{\"stream\":" + json_string(stream) + ",\"first_sequence\":" + std::to_string(receipt.first_sequence) +
         ",\"last_sequence\":" + std::to_string(receipt.last_sequence) +
         ",\"first_version\":" + std::to_string(receipt.first_version) +
         ",\"version\":" + std::to_string(receipt.last_version) +
         ",\"duplicate\":" + (receipt.duplicate ? "true" : "false") + "}";
}

std::string events_json(const std::vector<engine::Event>& events) {
  std::string out = "[";
  for (std::size_t i = 0; i < events.size(); ++i) {
    out += (i == 0 ? "" : ",") + format_event({events[i].header, events[i].payload}, true);
  }
  return out + "]";
}

// ?durable=true (the default: answer once durable) or false (once sequenced); nullopt if neither.
std::optional<bool> durable_wanted(std::string_view query) {
  const auto durable = parameter(query, "durable");
  if (!durable || *durable == "true") return true;
  if (*durable == "false") return false;
  return std::nullopt;
}

Answer bad_durable() { return error_answer(400, "bad_durable", "durable is true (answer once durable, the default) or false"); }

// The route's name in the metrics: fixed names, never the path (a label per path would grow without
// bound).
std::string_view route_of(std::string_view path, bool post) {
  if (path.starts_with("/streams/")) return post ? "stream_append" : "stream_read";
  if (path == "/events") return post ? "events_append" : "events_read";
  if (path == "/" || path == "/console.js" || path == "/console.css") return "console";
  for (const std::string_view route : {"/all", "/subscribe", "/metrics", "/health", "/ready"}) {
    if (path == route) return route.substr(1);
  }
  if (path == "/projections" || path.starts_with("/projections/")) return "projections";
  return "other";
}

unsigned status_of(const Status& status) {
  switch (status.code()) {
    case ErrorCode::invalid_argument: return 400;
    case ErrorCode::not_found: return 404;
    case ErrorCode::conflict: return 409;
    case ErrorCode::timed_out: return 504;
    default: return 503;  // the store cannot take it now (failed, closed, disk full or broken)
  }
}

}  // namespace

std::optional<std::string> query_parameter(std::string_view target, std::string_view name) {
  const std::size_t mark = target.find('?');
  if (mark == std::string_view::npos) return std::nullopt;
  const auto value = parameter(target.substr(mark + 1), name);
  if (!value) return std::nullopt;
  return percent_decoded(*value);
}

Result<std::uint64_t> min_sequence_of(const engine::Engine& engine, std::string_view target) {
  const std::size_t mark = target.find('?');
  const auto given = mark == std::string_view::npos ? std::nullopt : parameter(target.substr(mark + 1), "min_sequence");
  if (!given) return std::uint64_t{0};
  const auto sequence = whole_number(*given);
  if (!sequence) return Status(ErrorCode::invalid_argument, "min_sequence is a global sequence (a write's Annal-Sequence)");
  if (const std::uint64_t last = engine.last_sequence(); *sequence > last) {
    return Status(ErrorCode::invalid_argument, "min_sequence " + std::to_string(*sequence) + " is past the last sequence appended (" +
                                                   std::to_string(last) + "): no write in this store has it (one answered 202 "
                                                   "with durable=false is lost if the store crashed before it was durable)");
  }
  return *sequence;
}

Answer error_answer(unsigned status, std::string_view kind, std::string_view detail) {
  return {status, "{\"error\":" + json_string(kind) + ",\"detail\":" + json_string(detail) + "}", std::nullopt};
}

void StoreApi::handle(const Request& request, simdjson::dom::parser& parser, Reply reply) {
  const std::size_t mark = request.target.find('?');
  const std::string_view path = request.target.substr(0, mark);
  const std::string_view query = mark == std::string_view::npos ? "" : request.target.substr(mark + 1);
  const bool get = request.method == "GET";
  const bool post = request.method == "POST";
  if (options_.routes) {
    const Refused refused_here = [this, &request](const Need& need) { return refused(request, need); };
    const Later later = [this](std::function<Answer(QueryPool::Clock::time_point)> work, Reply answer) {
      queries_.run(std::move(work), std::move(answer));
    };
    Reply application = counted("application", reply);
    if (options_.routes(request, refused_here, later, application)) return;
  }
  reply = counted(route_of(path, post), std::move(reply));
  if (path == "/metrics") {
    if (!get) return reply(error_answer(405, "method_not_allowed", "GET /metrics"));
    if (auto refusal = refused(request, Need::admin())) return reply(std::move(*refusal));
    Answer answer(200, metrics_.scrape(transport_()));
    answer.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return reply(std::move(answer));
  }
  if (get && (path == "/" || path == "/console.js" || path == "/console.css")) {
    // The console holds no data (it asks the routes below, with the user's key): no key needed.
    Answer answer(200, std::string(*console_file(path)));
    answer.content_type = path == "/" ? "text/html; charset=utf-8" : path == "/console.js" ? "text/javascript" : "text/css";
    // It loads nothing from elsewhere, and a browser is told to allow nothing else.
    answer.headers = {{"Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:"},
                      {"X-Content-Type-Options", "nosniff"},
                      {"Cache-Control", "no-cache"}};
    return reply(std::move(answer));
  }
  if (path == "/health") {
    if (!get) return reply(error_answer(405, "method_not_allowed", "GET /health"));
    return reply({200, "{\"status\":\"ok\"}"});
  }
  if (path == "/ready") {
    if (!get) return reply(error_answer(405, "method_not_allowed", "GET /ready"));
    // Ready: recovered (the engine is open) and taking appends.
    if (const Status writable = engine_.writable(); !writable.ok()) {
      return reply({503, "{\"ready\":false,\"detail\":" + json_string(writable.to_string()) + "}"});
    }
    return reply({200, "{\"ready\":true,\"durable_sequence\":" + std::to_string(engine_.durable_sequence()) + "}"});
  }
  if (path == "/all") {
    if (!get) return reply(error_answer(405, "method_not_allowed", "GET /all"));
    if (auto refusal = refused(request, Need::on_every_stream(Right::read))) return reply(std::move(*refusal));
    return reply(read_all(query));
  }
  if (path == "/events") {
    if (post) return post_event(request, query, parser, std::move(reply));
    if (!get) return reply(error_answer(405, "method_not_allowed", "GET or POST /events"));
    if (auto refusal = refused(request, Need::on_every_stream(Right::read))) return reply(std::move(*refusal));
    return reply(get_events(query, parser));
  }
  constexpr std::string_view kProjections = "/projections";
  constexpr std::string_view kState = "/state";
  if (path.starts_with("/projections/") && path.ends_with(kState)) {
    if (!get) return reply(error_answer(405, "method_not_allowed", "GET /projections/{name}/state"));
    // A projection's state is made of every stream's events.
    if (auto refusal = refused(request, Need::on_every_stream(Right::read))) return reply(std::move(*refusal));
    const auto name = percent_decoded(path.substr(kProjections.size() + 1, path.size() - kProjections.size() - 1 - kState.size()));
    return projection_state(name.value_or(""), request.target, std::move(reply));
  }
  if (path == kProjections || path.starts_with("/projections/")) {
    if (!get) return reply(error_answer(405, "method_not_allowed", "GET /projections"));
    if (auto refusal = refused(request, Need::admin())) return reply(std::move(*refusal));
    if (path == kProjections) return reply(projections());
    const auto name = percent_decoded(path.substr(kProjections.size() + 1));
    if (!name || std::find(options_.projections.begin(), options_.projections.end(), *name) == options_.projections.end()) {
      return reply(error_answer(404, "no_projection", "no projection " + std::string(path.substr(kProjections.size() + 1))));
    }
    return reply(Answer(200, projection_json(*name)));
  }
  if (path == "/subscribe") {
    if (!get) return reply(error_answer(405, "method_not_allowed", "GET /subscribe"));
    return reply(subscribe(query, request));
  }
  constexpr std::string_view kStreams = "/streams/";
  if (path.starts_with(kStreams) && path.size() > kStreams.size()) {
    const auto stream = percent_decoded(path.substr(kStreams.size()));
    if (!stream || stream->find('/') != std::string::npos) {
      return reply(error_answer(400, "bad_stream", "a stream name is one path segment, percent-encoded"));
    }
    if (!post && !get) return reply(error_answer(405, "method_not_allowed", "GET or POST /streams/{stream}"));
    if (auto refusal = refused(request, Need::on(post ? Right::write : Right::read, *stream))) {
      return reply(std::move(*refusal));
    }
    if (post) return append(*stream, query, request.body, parser, std::move(reply));
    return reply(read_stream(*stream, query));
  }
  reply(error_answer(404, "not_found", "no route " + std::string(path) + " (/streams/{stream}, /all, /events, /subscribe, /health, /ready)"));
}

void StoreApi::append(std::string_view stream, std::string_view query, std::string_view body,
                      simdjson::dom::parser& parser, Reply reply) {
  engine::ExpectedVersion expected = engine::ExpectedVersion::any();
  if (const auto given = parameter(query, "expected_version"); given && *given != "any") {
    const auto version = whole_number(*given);
    if (*given == "-1") {
      expected = engine::ExpectedVersion::no_stream();
    } else if (version) {
      expected = engine::ExpectedVersion::exactly(*version);
    } else {
      return reply(error_answer(400, "bad_expected_version", "expected_version is a version, -1 (no stream yet) or any"));
    }
  }
  const auto durable = durable_wanted(query);
  if (!durable) return reply(bad_durable());
  simdjson::dom::element root;
  if (const auto failed = parser.parse(body.data(), body.size()).get(root); failed != simdjson::SUCCESS) {
    return reply(error_answer(400, "bad_json", std::string("the body is not JSON: ") + simdjson::error_message(failed)));
  }
  std::vector<simdjson::dom::object> objects;
  simdjson::dom::array array;
  simdjson::dom::object single;
  if (root.get(array) == simdjson::SUCCESS) {
    for (const simdjson::dom::element element : array) {
      if (objects.size() == options_.events_per_request_max) {
        return reply(error_answer(413, "too_many_events", "at most " + std::to_string(options_.events_per_request_max) +
                                                       " events in one request"));
      }
      simdjson::dom::object object;
      if (element.get(object) != simdjson::SUCCESS) {
        return reply(error_answer(400, "bad_event", "event " + std::to_string(objects.size()) + " is not an object"));
      }
      objects.push_back(object);
    }
    if (objects.empty()) return reply(error_answer(400, "bad_event", "an empty array appends nothing"));
  } else if (root.get(single) == simdjson::SUCCESS) {
    objects.push_back(single);
  } else {
    return reply(error_answer(400, "bad_event", "the body is an event object or an array of them"));
  }
  std::vector<JsonEvent> parsed;
  parsed.reserve(objects.size());
  for (std::size_t i = 0; i < objects.size(); ++i) {
    auto event = parse_event(objects[i], StreamField::refused);
    if (!event.ok()) {
      return reply(error_answer(400, "bad_event", (objects.size() > 1 ? "event " + std::to_string(i) + ": " : std::string()) +
                                               event.status().message()));
    }
    parsed.push_back(std::move(event).value());
  }
  for (std::size_t i = 0; i < parsed.size(); ++i) {
    if (parsed[i].data.size() > options_.event_bytes_max) {
      return reply(error_answer(413, "event_too_large", "event " + std::to_string(i) + " has " + std::to_string(parsed[i].data.size()) +
                                                            " bytes of data; an event holds at most " +
                                                            std::to_string(options_.event_bytes_max)));
    }
  }
  std::vector<engine::EventData> events;
  events.reserve(parsed.size());
  for (const JsonEvent& event : parsed) {
    events.push_back({.type = event.type, .payload = std::as_bytes(std::span(event.data)), .event_id = event.id});
  }
  commit(stream, expected, *durable, events, std::move(reply));
}

void StoreApi::commit(std::string_view stream, const engine::ExpectedVersion& expected, bool durable,
                      std::span<const engine::EventData> events, Reply reply) {
  const engine::AppendResult appended = engine_.append(stream, expected, events);
  if (!appended.ok()) {
    Answer answer = error_answer(status_of(appended.status()), appended.code() == ErrorCode::conflict ? "conflict" : "refused",
                          appended.status().message());
    if (appended.code() == ErrorCode::conflict) {
      const auto current = appended.current_version();
      answer.body.pop_back();
      answer.body += ",\"version\":" + (current ? std::to_string(*current) : std::string("null")) + "}";
    }
    return reply(std::move(answer));
  }
  const engine::Receipt receipt = appended.value();
  Answer answer{201, receipt_json(stream, receipt), receipt.last_sequence};
  if (!durable) {
    answer.status = 202;
    return reply(std::move(answer));
  }
  // Answered when the group commit that holds it is synced: no server thread waits for the disk.
  engine_.on_durable(receipt, [answer = std::move(answer), reply = std::move(reply)](const Status& status) mutable {
    if (!status.ok()) {
      return reply(error_answer(503, "not_durable", "the events were sequenced but will not be durable: " + status.to_string()));
    }
    reply(std::move(answer));
  });
}

Answer StoreApi::read_stream(std::string_view stream, std::string_view query) {
  engine::ReadStreamOptions options{.max_count = options_.read_limit_max};
  if (const auto direction = parameter(query, "direction")) {
    if (*direction == "backward") {
      options.direction = engine::Direction::backwards;
      options.from_version = engine::kFromEnd;
    } else if (*direction != "forward") {
      return error_answer(400, "bad_direction", "direction is forward or backward");
    }
  }
  if (const auto from = parameter(query, "from")) {
    const auto version = whole_number(*from);
    if (!version) return error_answer(400, "bad_from", "from is a stream version (a whole number)");
    options.from_version = *version;
  }
  if (const auto limit = parameter(query, "limit")) {
    const auto count = whole_number(*limit);
    if (!count || *count == 0) return error_answer(400, "bad_limit", "limit is a whole number from 1");
    options.max_count = std::min<std::uint64_t>(*count, options_.read_limit_max);
  }
  if (!engine_.stream_version(stream)) return error_answer(404, "no_stream", "stream " + std::string(stream) + " has no events");
  const auto events = engine_.read_stream(stream, options);
  if (!events.ok()) return error_answer(status_of(events.status()), "read_failed", events.status().message());
  return {200, "{\"stream\":" + json_string(stream) + ",\"events\":" + events_json(events.value()) + "}", std::nullopt};
}

Result<std::vector<engine::Event>> StoreApi::read_log(std::string_view query) {
  std::uint64_t from = 1;
  std::size_t limit = options_.read_limit_max;
  if (const auto given = parameter(query, "from")) {
    const auto sequence = whole_number(*given);
    if (!sequence || *sequence == 0) return Status(ErrorCode::invalid_argument, "from is a global sequence, from 1");
    from = *sequence;
  }
  if (const auto given = parameter(query, "limit")) {
    const auto count = whole_number(*given);
    if (!count || *count == 0) return Status(ErrorCode::invalid_argument, "limit is a whole number from 1");
    limit = std::min<std::size_t>(*count, options_.read_limit_max);
  }
  return engine_.read_all(from, limit);
}

Answer StoreApi::read_all(std::string_view query) {
  const auto events = read_log(query);
  if (!events.ok()) return error_answer(status_of(events.status()), "bad_read", events.status().message());
  Answer answer(200, "{\"events\":" + events_json(events.value()) + "}");
  if (!events.value().empty()) answer.sequence = events.value().back().header.sequence;
  return answer;
}

void StoreApi::post_event(const Request& request, std::string_view query, simdjson::dom::parser& parser, Reply reply) {
  const auto durable = durable_wanted(query);
  if (!durable) return reply(bad_durable());
  simdjson::dom::object object;
  if (const auto failed = parser.parse(request.body.data(), request.body.size()).get(object); failed != simdjson::SUCCESS) {
    return reply(error_answer(400, "bad_json", std::string("the body is one JSON object: ") + simdjson::error_message(failed)));
  }
  std::string_view type;
  if (object["eventType"].get(type) != simdjson::SUCCESS || type.empty()) {
    return reply(error_answer(400, "bad_event", "eventType (a string) is missing"));
  }
  // The stream: named, or the order's or the refund's the event is about.
  std::string stream;
  simdjson::dom::element named;
  for (const auto& [field, prefix] : {std::pair{"stream", ""}, {"orderId", "order-"}, {"refundId", "refund-"}}) {
    if (object[field].get(named) != simdjson::SUCCESS) continue;
    std::string_view text;
    std::uint64_t number = 0;
    if (named.get(text) == simdjson::SUCCESS && !text.empty()) {
      stream = prefix + std::string(text);
    } else if (named.get(number) == simdjson::SUCCESS) {
      stream = prefix + std::to_string(number);
    } else {
      return reply(error_answer(400, "bad_event", std::string(field) + " is a non-empty string or a whole number"));
    }
    break;
  }
  if (stream.empty()) return reply(error_answer(400, "bad_event", "the event names its stream: stream, orderId or refundId"));
  if (auto refusal = refused(request, Need::on(Right::write, stream))) return reply(std::move(*refusal));
  const std::string payload = simdjson::minify(object);  // the event as sent is its data
  if (payload.size() > options_.event_bytes_max) {
    return reply(error_answer(413, "event_too_large", "the event has " + std::to_string(payload.size()) +
                                                          " bytes; an event holds at most " + std::to_string(options_.event_bytes_max)));
  }
  const engine::EventData event{.type = type, .payload = std::as_bytes(std::span(payload))};
  commit(stream, engine::ExpectedVersion::any(), *durable, std::span(&event, 1), std::move(reply));
}

Answer StoreApi::get_events(std::string_view query, simdjson::dom::parser& parser) {
  const auto events = read_log(query);
  if (!events.ok()) return error_answer(status_of(events.status()), "bad_read", events.status().message());
  // Each event as the seeds send it: its data, where that is an object naming its eventType (as
  // POST /events stores them); any other event in the same shape, with its stream and data.
  std::string body = "[";
  for (const engine::Event& event : events.value()) {
    if (body.size() > 1) body += ",";
    const std::string_view data(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
    simdjson::dom::object object;
    std::string_view type;
    if (parser.parse(data.data(), data.size()).get(object) == simdjson::SUCCESS &&
        object["eventType"].get(type) == simdjson::SUCCESS) {
      body += data;
      continue;
    }
    const std::string formatted = format_event({event.header, event.payload}, true);
    body += "{\"eventType\":" + json_string(event.header.type) + ",\"stream\":" + json_string(event.header.stream_name) +
            ",\"sequence\":" + std::to_string(event.header.sequence) + ",\"event\":" + formatted + "}";
  }
  Answer answer(200, body + "]");
  if (!events.value().empty()) answer.sequence = events.value().back().header.sequence;
  return answer;
}

Reply StoreApi::counted(std::string_view route, Reply reply) {
  return [this, route, started = std::chrono::steady_clock::now(), reply = std::move(reply)](Answer answer) {
    metrics_.answered(route, answer.status, std::chrono::steady_clock::now() - started);
    reply(std::move(answer));
  };
}

void StoreApi::set_keys(std::shared_ptr<const AccessKeys> keys) {
  std::lock_guard lock(keys_mutex_);
  keys_ = std::move(keys);
}

std::optional<Answer> StoreApi::refused(const Request& request, const Need& need) const {
  std::shared_ptr<const AccessKeys> keys;
  {
    std::lock_guard lock(keys_mutex_);
    keys = keys_;
  }
  if (!keys) return std::nullopt;
  switch (keys->check(request.authorization, need)) {
    case Verdict::allowed: return std::nullopt;
    case Verdict::unauthenticated: {
      Answer answer = error_answer(401, "unauthenticated",
                            request.authorization.empty() ? "this server needs a key: Authorization: Bearer ID.SECRET"
                                                          : "the key is not known, or its secret is wrong");
      answer.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"annal\"");
      return answer;
    }
    case Verdict::forbidden: break;
  }
  const char* right = need.right == Right::read ? "read" : need.right == Right::write ? "write" : "admin";
  const std::string what = need.right == Right::admin ? "admin"
                           : need.every_stream        ? std::string(right) + ":* (every stream)"
                                                      : std::string(right) + " on stream " + std::string(need.stream);
  return error_answer(403, "forbidden", "the key does not grant " + what);
}

std::string StoreApi::projection_json(const std::string& name) {
  const auto status = engine_.projection_status(name);
  if (!status.ok()) return "{\"name\":" + json_string(name) + ",\"error\":" + json_string(status.status().to_string()) + "}";
  const engine::ProjectionStatus& s = status.value();
  const std::uint64_t durable = engine_.durable_sequence();
  return "{\"name\":" + json_string(name) + ",\"applied\":" + std::to_string(s.applied) +
         ",\"lag\":" + std::to_string(durable > s.applied ? durable - s.applied : 0) +
         ",\"restored_from\":" + std::to_string(s.restored_from) + ",\"replayed\":" + std::to_string(s.replayed) +
         ",\"snapshots_written\":" + std::to_string(s.snapshots_written) + ",\"detached\":" + std::to_string(s.detached) +
         ",\"live\":" + (s.live ? "true" : "false") +
         ",\"error\":" + (s.error.ok() ? std::string("null") : json_string(s.error.to_string())) +
         ",\"retrying\":" + (s.retrying.ok() ? std::string("null") : json_string(s.retrying.to_string())) + "}";
}

void StoreApi::projection_state(const std::string& name, std::string_view target, Reply reply) {
  if (std::find(options_.projections.begin(), options_.projections.end(), name) == options_.projections.end()) {
    return reply(error_answer(404, "no_projection", "no projection " + name));
  }
  const auto min_sequence = min_sequence_of(engine_, target);
  if (!min_sequence.ok()) return reply(error_answer(400, "bad_min_sequence", min_sequence.status().message()));
  queries_.run([this, name, min_sequence = min_sequence.value()](QueryPool::Clock::time_point deadline) {
    std::optional<std::string> state;
    const Status queried = engine_.query(name, min_sequence, [&](const engine::Projection& projection) {
      if (const auto* json = dynamic_cast<const JsonStateProjection*>(&projection)) state = json->state_json();
    }, deadline - QueryPool::Clock::now());
    if (!queried.ok()) {
      const bool late = queried.code() == ErrorCode::timed_out;
      return error_answer(late ? 504 : 503, late ? "not_yet_applied" : "unavailable", queried.message());
    }
    if (!state) return error_answer(404, "no_state", "projection " + name + " does not show its state as JSON");
    return Answer(200, "{\"name\":" + json_string(name) + ",\"state\":" + *state + "}");
  }, std::move(reply));
}

Answer StoreApi::projections() {
  std::string body = "{\"durable_sequence\":" + std::to_string(engine_.durable_sequence()) + ",\"projections\":[";
  for (std::size_t i = 0; i < options_.projections.size(); ++i) body += (i == 0 ? "" : ",") + projection_json(options_.projections[i]);
  return Answer(200, body + "]}");
}

Answer StoreApi::subscribe(std::string_view query, const Request& request) {
  const std::string_view last_event_id = request.last_event_id;
  // From now on by default: the next event to become durable.
  std::uint64_t from = engine_.durable_sequence() + 1;
  if (const auto given = parameter(query, "from")) {
    const auto sequence = whole_number(*given);
    if (!sequence || *sequence == 0) return error_answer(400, "bad_from", "from is a global sequence, from 1");
    from = *sequence;
  }
  // A reconnecting client resumes after the last event it saw, whatever its URL says.
  if (!last_event_id.empty()) {
    const auto seen = whole_number(last_event_id);
    // The largest number has no next one: taken as given, from would wrap to 0, the whole log.
    if (!seen || *seen == std::numeric_limits<std::uint64_t>::max()) {
      return error_answer(400, "bad_last_event_id", "Last-Event-ID is the id (global sequence) of an event sent");
    }
    from = *seen + 1;
  }
  auto source = std::make_shared<FeedSource>();
  if (const auto stream = parameter(query, "stream")) {
    source->stream = percent_decoded(*stream);
    if (!source->stream || source->stream->empty()) return error_answer(400, "bad_stream", "stream is a stream name, percent-encoded");
  }
  const Need need = source->stream ? Need::on(Right::read, *source->stream) : Need::on_every_stream(Right::read);
  if (auto refusal = refused(request, need)) return std::move(*refusal);
  auto subscription = engine_.subscribe(from);
  if (!subscription.ok()) {
    if (subscription.code() == ErrorCode::not_found) {
      return error_answer(410, "removed", subscription.status().message() + "; subscribe from a later sequence");
    }
    return error_answer(status_of(subscription.status()), "bad_from", subscription.status().message());
  }
  source->subscription = std::move(subscription).value();
  Answer answer;
  answer.feed = std::move(source);
  return answer;
}

}  // namespace annal::server
