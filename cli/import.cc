// annal import DIR FILE|-: appends events from JSON lines, parsed with simdjson:
//   {"stream": "order-1", "type": "OrderCreated", "data": {...}, "id": "<uuid>", "expected_version": 3}
// id and expected_version are optional (-1: the stream must not exist yet). A bad line (bad JSON, a
// missing, unknown or repeated field, a version conflict, an id already used by a different event)
// is reported with its number; the import stops there with every line before it appended and
// nothing after, unless --skip-bad. A line repeating an event the store has (same id, stream, type
// and data: a re-run of the same import) is counted as a repeat, not appended: the engine's
// idempotency window is sized to hold the whole file (window_for).
#include <simdjson.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <utility>
#include <vector>
#include <iostream>
#include <string>

#include "annal/engine/engine.h"
#include "arguments.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

using Clock = engine::Engine::Clock;

struct ImportOptions {
  std::string directory;
  std::string file;
  bool skip_bad = false;
  bool accept_data_loss = false;
  std::string key_file;
};

using Line = server::JsonEvent;

// One line of input: a JSON object, taken apart (the error says what is wrong with it).
Result<Line> parse_line(simdjson::dom::parser& parser, const std::string& text) {
  simdjson::dom::object object;
  if (const auto error = parser.parse(text).get(object); error != simdjson::SUCCESS) {
    return Status(ErrorCode::invalid_argument, std::string("not a JSON object: ") + simdjson::error_message(error));
  }
  return server::parse_event(object, server::StreamField::required);
}

// The events a re-run's repeats are compared with, read ahead: a repeated file repeats the
// store's events in order, and one read per line (a journal reader opened each time) took a
// millisecond and more a line.
class StoredEvents {
 public:
  explicit StoredEvents(engine::Engine& store) : store_(store) {}

  // The first event `appended` names, or nullptr if the store has none there.
  Result<const engine::Event*> at(const engine::Receipt& appended) {
    const std::uint64_t sequence = appended.first_sequence;
    if (const engine::Event* found = find(sequence)) return found;
    // Reads serve durable events only: an append of this very run may not be yet.
    if (Status durable = store_.wait_durable(appended, engine::Engine::Clock::now() + std::chrono::seconds(60));
        !durable.ok()) {
      return durable;
    }
    auto read = store_.read_all(sequence, kReadAhead);
    if (!read.ok()) return read.status();
    events_ = std::move(read).value();
    return find(sequence);
  }

 private:
  static constexpr std::size_t kReadAhead = 1024;
  const engine::Event* find(std::uint64_t sequence) const {
    const auto it = std::lower_bound(events_.begin(), events_.end(), sequence,
                                     [](const engine::Event& e, std::uint64_t s) { return e.header.sequence < s; });
    return it != events_.end() && it->header.sequence == sequence ? &*it : nullptr;
  }
  engine::Engine& store_;
  std::vector<engine::Event> events_;
};

// The engine took `line` as a retry of an append it has (same id): true if that append is this
// very event (an exact repeat), otherwise the error that says which ids clash.
Result<bool> same_as_stored(StoredEvents& stored_events, const Line& line, const engine::Receipt& original,
                            std::optional<std::uint64_t> original_line) {
  const auto stored = stored_events.at(original);
  if (!stored.ok()) return stored.status();
  const engine::Event* event = stored.value();
  const auto payload = std::as_bytes(std::span(line.data));
  if (event != nullptr && event->header.stream_id == original.stream_id && event->header.type == line.type &&
      std::equal(payload.begin(), payload.end(), event->payload.begin(), event->payload.end())) {
    return true;
  }
  return Status(ErrorCode::invalid_argument,
                "its id was already used by a different event (" +
                    (original_line ? "line " + std::to_string(*original_line) : std::string("in the store")) +
                    ", sequence " + std::to_string(original.first_sequence) + "); a new event needs a new id");
}

// The idempotency window for importing `file`: a re-run of the same file (after a crash, or by
// mistake) finds its lines' ids only among the ids the engine remembers (rebuilt from the journal
// at open), so the window holds the whole file, and the default beyond it for what else was
// appended between the runs. Up to the engine's limit; stdin gets the default.
std::size_t window_for(const std::string& file, std::size_t default_window) {
  constexpr std::size_t kWindowMax = std::size_t{1} << 24;  // Options::idempotency_window's limit
  if (file == "-") return default_window;
  std::ifstream in(file, std::ios::binary);
  std::size_t lines = 0;
  std::vector<char> block(1 << 16);
  while (in.read(block.data(), static_cast<std::streamsize>(block.size())) || in.gcount() > 0) {
    lines += static_cast<std::size_t>(std::count(block.data(), block.data() + in.gcount(), '\n'));
  }
  if (lines + default_window > kWindowMax) {
    std::fprintf(stderr,
                 "annal import: %s has %zu lines; a second run of it recognises repeats only among the last %zu "
                 "events of the store\n",
                 file.c_str(), lines, kWindowMax);
    return kWindowMax;
  }
  return std::max(default_window, lines + default_window);
}

int run(const ImportOptions& options) {
  std::ifstream file;
  if (options.file != "-") {
    // A directory opens as a stream whose first read fails: it would pass for an empty file.
    if (std::filesystem::is_directory(options.file)) return fail("import", options.file + " is a directory, not a file of JSON lines");
    file.open(options.file);
    if (!file) return fail("import", options.file + ": cannot be read");
  }
  std::istream& in = options.file == "-" ? std::cin : file;
  engine::Options opening;
  opening.journal.accept_data_loss = options.accept_data_loss;
  opening.idempotency_window = window_for(options.file, opening.idempotency_window);
  if (Status keys = use_key_file(options.key_file, opening); !keys.ok()) return fail("import", keys);
  auto opened = engine::Engine::open(options.directory, opening);
  if (!opened.ok()) return fail("import", opened.status());
  engine::Engine& store = *opened.value();
  simdjson::dom::parser parser;
  StoredEvents stored_events(store);
  std::uint64_t number = 0, imported = 0, skipped = 0, repeats = 0;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint64_t> id_lines;  // ids of this input -> line
  engine::Receipt last;
  int exit_code = kOk;
  Progress progress("import", 0);
  std::string text;
  const auto start = Clock::now();
  while (std::getline(in, text)) {
    ++number;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines
    auto line = parse_line(parser, text);
    Status bad = line.status();
    if (line.ok()) {
      const auto payload = std::as_bytes(std::span(line.value().data));
      const engine::EventData event{.type = line.value().type, .payload = payload, .event_id = line.value().id};
      const auto appended = store.append(line.value().stream, line.value().expected, {&event, 1});
      const auto id = std::make_pair(line.value().id.hi, line.value().id.lo);
      if (appended.ok() && appended.value().duplicate) {
        const auto seen = id_lines.find(id);
        const auto same = same_as_stored(stored_events, line.value(), appended.value(),
                                         seen != id_lines.end() ? std::optional(seen->second) : std::nullopt);
        if (same.ok()) {
          ++repeats;  // nothing appended: it is there already
          continue;
        }
        bad = same.status();
      } else if (appended.ok()) {
        if (!line.value().id.empty()) id_lines.emplace(id, number);
        last = appended.value();
        progress.update(++imported);
        continue;
      } else {
        bad = appended.status();
      }
    }
    const std::string where = options.file + " line " + std::to_string(number) + ": ";
    if (!options.skip_bad) {
      exit_code = fail("import", where + bad.to_string() + "; lines before it are imported, none after");
      break;
    }
    std::fprintf(stderr, "annal import: %sskipped: %s\n", where.c_str(), bad.to_string().c_str());
    ++skipped;
  }
  progress.finish();
  // getline fails at the end of the input and on a read error alike: only the error sets badbit.
  if (in.bad()) {
    exit_code = fail("import", options.file + ": reading failed after line " + std::to_string(number) +
                                   "; the lines before it are imported");
  }
  if (last.last_sequence != 0) {
    if (Status durable = store.wait_durable(last, Clock::now() + std::chrono::seconds(60)); !durable.ok()) {
      return fail("import", durable);
    }
  }
  if (Status closed = store.close(); !closed.ok()) return fail("import", closed);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("imported %s events (%s repeats of events already in the store, %s lines skipped) in %.2f s, durable "
              "up to sequence %s\n",
              grouped(imported).c_str(), grouped(repeats).c_str(), grouped(skipped).c_str(), seconds,
              grouped(last.last_sequence).c_str());
  return exit_code;
}

}  // namespace

void add_import(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ImportOptions>();
  auto* command = app.add_subcommand("import", "Append events from JSON lines (a file, or - for stdin), or from Kafka");
  command->add_option("dir", options->directory, "The store's directory (created if missing)");
  command->add_option("file", options->file, "JSON lines, one event each; - reads stdin");
  command->add_flag("--skip-bad", options->skip_bad, "Skip bad lines (each reported) instead of stopping at the first");
  add_accept_data_loss(*command, options->accept_data_loss);
  add_key_file(*command, options->key_file);
  add_import_kafka(*command, exit_code);
  command->callback([command, &exit_code, options] {
    if (!command->get_subcommands().empty()) return;  // import kafka
    if (options->directory.empty() || options->file.empty()) {
      // Bad usage, as CLI11 answers a missing positional: exit 2.
      (void)fail("import", "usage: annal import DIR FILE (or annal import kafka DIR ...)");
      exit_code = kUsage;
      return;
    }
    exit_code = run(*options);
  });
}

}  // namespace annal::cli
