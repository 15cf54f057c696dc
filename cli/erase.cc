// annal erase DIR STREAM --yes (or --id N for a stream the application numbers): crypto-shredding
// (Engine::erase_stream). Destroys the key of the stream's events for good: they then read as
// erased everywhere, copies and backups of the journal included. Refuses without --yes, since
// nothing undoes it.
#include <cstdio>
#include <optional>
#include <string>

#include "annal/engine/engine.h"
#include "arguments.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

struct EraseOptions {
  std::string directory;
  std::string stream;
  std::optional<std::uint64_t> id;
  std::string key_file;
  bool yes = false;
};

int run(const EraseOptions& options) {
  if (options.stream.empty() == !options.id.has_value()) {
    return fail("erase", Status(ErrorCode::invalid_argument, "name the stream, or give its --id: one of the two"));
  }
  const engine::StreamRef stream = options.id ? engine::StreamRef::id(*options.id) : engine::StreamRef(options.stream);
  const std::string named = options.id ? "stream id " + std::to_string(*options.id) : "stream " + options.stream;
  engine::Options opening;
  if (Status keys = use_key_file(options.key_file, opening); !keys.ok()) return fail("erase", keys);
  auto opened = engine::Engine::open(options.directory, opening);
  if (!opened.ok()) return fail("erase", opened.status());
  engine::Engine& store = *opened.value();
  const std::optional<std::uint64_t> last_version = store.stream_version(stream);
  if (!options.yes) {
    (void)store.close();
    std::fprintf(stderr,
                 "erase: %s of %s holds %s events; erasing destroys their key for good (no copy or backup of the "
                 "journal can read them after). Run again with --yes to erase it.\n",
                 named.c_str(), options.directory.c_str(),
                 last_version ? grouped(*last_version + 1).c_str() : "no");
    return kUsage;
  }
  const auto erased = store.erase_stream(stream);
  if (!erased.ok()) {
    (void)store.close();
    return fail("erase", erased.status());
  }
  if (Status closed = store.close(); !closed.ok()) return fail("erase", closed);
  std::printf("erased %s: %s events, their key destroyed (the erasure is sequence %s); they now read as erased. "
              "Snapshots taken before it still hold what projections made of them (docs/security.md)\n",
              named.c_str(), last_version ? grouped(*last_version + 1).c_str() : "0", grouped(erased.value()).c_str());
  return kOk;
}

}  // namespace

void add_erase(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<EraseOptions>();
  auto* command = app.add_subcommand(
      "erase", "Erase one stream of an encrypted store for good, by destroying its key (crypto-shredding)");
  command->add_option("directory", options->directory, "The store")->required();
  command->add_option("stream", options->stream, "The stream's name");
  command->add_option("--id", options->id, "The stream's id instead, for a stream the application numbers");
  command->add_flag("--yes", options->yes, "Erase it: without this, only say what would be erased");
  add_key_file(*command, options->key_file);
  command->callback([&exit_code, options] { exit_code = run(*options); });
}

}  // namespace annal::cli
