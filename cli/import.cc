// annal import DIR FILE|-: appends events from JSON lines, parsed with simdjson:
//   {"stream": "order-1", "type": "OrderCreated", "data": {...}, "id": "<uuid>", "expected_version": 3}
// id and expected_version are optional (-1: the stream must not exist yet). A bad line (bad JSON, a
// missing or unknown field, a version conflict) is reported with its number; the import stops there
// with every line before it appended and nothing after, unless --skip-bad.
#include <simdjson.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "annal/engine/engine.h"
#include "commands.h"
#include "event_format.h"
#include "output.h"

namespace annal::cli {
namespace {

using Clock = engine::Engine::Clock;

struct ImportOptions {
  std::string directory;
  std::string file;
  bool skip_bad = false;
};

struct Line {
  std::string stream;
  std::string type;
  std::string data;  // minified JSON
  engine::Id128 id;
  engine::ExpectedVersion expected = engine::ExpectedVersion::any();
};

// Checks and takes apart one line; the error says what is wrong with it.
Result<Line> parse_line(simdjson::dom::parser& parser, const std::string& text) {
  simdjson::dom::object object;
  if (const auto error = parser.parse(text).get(object); error != simdjson::SUCCESS) {
    return Status(ErrorCode::invalid_argument, std::string("not a JSON object: ") + simdjson::error_message(error));
  }
  Line line;
  bool has_data = false;
  for (const auto field : object) {
    const std::string_view key = field.key;
    std::string_view text_value;
    if (key == "stream" || key == "type" || key == "id") {
      if (field.value.get_string().get(text_value) != simdjson::SUCCESS) {
        return Status(ErrorCode::invalid_argument, "\"" + std::string(key) + "\" must be a string");
      }
      if (key == "stream") line.stream = text_value;
      if (key == "type") line.type = text_value;
      if (key == "id") {
        const auto id = parse_id(text_value);
        if (!id) return Status(ErrorCode::invalid_argument, "\"id\" must be a UUID (32 hex digits), not " + std::string(text_value));
        line.id = *id;
      }
    } else if (key == "data") {
      line.data = simdjson::minify(field.value);
      has_data = true;
    } else if (key == "expected_version") {
      std::int64_t version = 0;
      if (field.value.get_int64().get(version) != simdjson::SUCCESS || version < -1) {
        return Status(ErrorCode::invalid_argument, "\"expected_version\" must be an integer from -1 (no stream yet) up");
      }
      line.expected = version == -1 ? engine::ExpectedVersion::no_stream()
                                    : engine::ExpectedVersion::exactly(static_cast<std::uint64_t>(version));
    } else {
      return Status(ErrorCode::invalid_argument, "unknown field \"" + std::string(key) +
                                                     "\" (stream, type, data, id, expected_version)");
    }
  }
  if (line.stream.empty() || line.type.empty() || !has_data) {
    return Status(ErrorCode::invalid_argument, "\"stream\", \"type\" and \"data\" are required");
  }
  return line;
}

int run(const ImportOptions& options) {
  std::ifstream file;
  if (options.file != "-") {
    file.open(options.file);
    if (!file) return fail("import", options.file + ": cannot be read");
  }
  std::istream& in = options.file == "-" ? std::cin : file;
  auto opened = engine::Engine::open(options.directory, {});
  if (!opened.ok()) return fail("import", opened.status());
  engine::Engine& store = *opened.value();
  simdjson::dom::parser parser;
  std::uint64_t number = 0, imported = 0, skipped = 0;
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
      if (appended.ok()) {
        last = appended.value();
        progress.update(++imported);
        continue;
      }
      bad = appended.status();
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
  if (last.last_sequence != 0) {
    if (Status durable = store.wait_durable(last, Clock::now() + std::chrono::seconds(60)); !durable.ok()) {
      return fail("import", durable);
    }
  }
  if (Status closed = store.close(); !closed.ok()) return fail("import", closed);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("imported %s events (%s lines skipped) in %.2f s, durable up to sequence %s\n", grouped(imported).c_str(),
              grouped(skipped).c_str(), seconds, grouped(last.last_sequence).c_str());
  return exit_code;
}

}  // namespace

void add_import(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ImportOptions>();
  auto* command = app.add_subcommand("import", "Append events from JSON lines (a file, or - for stdin)");
  command->add_option("dir", options->directory, "The store's directory (created if missing)")->required();
  command->add_option("file", options->file, "JSON lines, one event each; - reads stdin")->required();
  command->add_flag("--skip-bad", options->skip_bad, "Skip bad lines (each reported) instead of stopping at the first");
  command->callback([&exit_code, options] { exit_code = run(*options); });
}

}  // namespace annal::cli
