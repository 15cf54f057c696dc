// annal dump DIR [--from SEQ] [--to SEQ] [--stream NAME] [--json]: events as text or JSON lines,
// read-only; exit 1 if the log stops at damage before what was asked for. tail DIR [--from SEQ] [--stream NAME] [--json]: the same for new events as the writer
// makes them durable, until interrupted.
#include <csignal>
#include <cstdio>
#include <string>

#include "annal/engine/engine.h"
#include "annal/journal/inspect.h"
#include "arguments.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

using Clock = engine::Engine::Clock;

struct DumpOptions {
  std::string directory;
  std::uint64_t from = 0;  // 0: dump, the first the log holds; tail, after what is durable now
  std::uint64_t to = UINT64_MAX;
  std::string stream;
  bool json = false;
  std::string key_file;
};

volatile std::sig_atomic_t interrupted = 0;

// Prints every event of `subscription` in [options.from, to] (of options.stream, if given). With
// `follow`, waits for more until interrupted; otherwise stops at `to`.
int print_events(engine::Subscription& subscription, const DumpOptions& options, std::uint64_t to, bool follow,
                 std::string_view command) {
  while (subscription.position() <= to && interrupted == 0) {
    auto event = subscription.next(Clock::now() + std::chrono::milliseconds(200));
    if (event.code() == ErrorCode::timed_out) {
      // Past `to` already: the records it ended with were the engine's own (an erasure), not events.
      if (follow || subscription.position() > to) continue;
      return fail(command, "the log ended before sequence " + std::to_string(to));
    }
    if (!event.ok()) return fail(command, event.status());
    const engine::EventHeader& header = event.value().header;
    if (header.sequence > to) break;
    if (!options.stream.empty() && header.stream_name != options.stream &&
        std::to_string(header.stream_id) != options.stream) {
      continue;
    }
    const std::string line = server::format_event(event.value(), options.json);
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fputc('\n', stdout);
    if (follow) std::fflush(stdout);
  }
  return kOk;
}

int dump(const DumpOptions& options) {
  engine::Options opening;
  if (Status keys = use_key_file(options.key_file, opening); !keys.ok()) return fail("dump", keys);
  auto opened = engine::Engine::open_read_only(options.directory, opening);
  if (!opened.ok()) return fail("dump", opened.status());
  engine::Engine& store = *opened.value();
  // Without --from, the first sequence the log still holds (retention may have removed the start).
  std::uint64_t from = options.from;
  if (from == 0) {
    auto journal = journal::inspect_directory(options.directory, false);
    if (!journal.ok()) return fail("dump", journal.status());
    from = std::max<std::uint64_t>(journal.value().first_sequence, 1);
  }
  // Beside a live writer, what it has made durable; the rest may still be taken back.
  const std::uint64_t to = std::min(options.to, store.durable_sequence());
  int printed = kOk;
  if (from <= to) {
    auto subscription = store.subscribe(from);
    if (!subscription.ok()) return fail("dump", subscription.status());
    printed = print_events(*subscription.value(), options, to, false, "dump");
  }
  // The log ended at damage, not at its end: what is after it was not printed, and must not pass
  // for all there is (a `dump | import` backup would quietly drop it).
  const std::string& damage = store.open_report().stopped_at_damage;
  if (printed == kOk && !damage.empty() && options.to > to) {
    return fail("dump", damage + "; the events after it were not printed (annal verify lists the damage)");
  }
  // Acknowledged events the log no longer holds (a deleted segment): the dump is not all of them.
  const std::string& lost = store.open_report().data_loss;
  if (printed == kOk && !lost.empty()) return fail("dump", lost + "; the dump cannot include them (annal verify)");
  return printed;
}

int tail(const DumpOptions& options) {
  engine::Options opening;
  if (Status keys = use_key_file(options.key_file, opening); !keys.ok()) return fail("tail", keys);
  auto opened = engine::Engine::open_read_only(options.directory, opening);
  if (!opened.ok()) return fail("tail", opened.status());
  // By default from the first event not yet durable (one already in the files may become durable
  // later); --from resumes at a checkpoint.
  const std::uint64_t from = options.from != 0 ? options.from : opened.value()->durable_sequence() + 1;
  auto subscription = opened.value()->subscribe(from);
  if (!subscription.ok()) return fail("tail", subscription.status());
  std::signal(SIGINT, [](int) { interrupted = 1; });
  std::signal(SIGTERM, [](int) { interrupted = 1; });
  // On stderr, so stdout stays events only; a test waits for it before it makes events durable.
  std::fprintf(stderr, "tail: following %s from sequence %llu (Ctrl-C stops)\n", options.directory.c_str(),
               static_cast<unsigned long long>(from));
  return print_events(*subscription.value(), options, UINT64_MAX, true, "tail");
}

void add_common(CLI::App& command, DumpOptions& options) {
  command.add_option("dir", options.directory, "The store's directory")->required();
  command.add_option("--stream", options.stream, "Only this stream (its name, or its id)");
  command.add_flag("--json", options.json, "JSON lines (documented in README.md)");
  add_key_file(command, options.key_file);
}

}  // namespace

void add_dump(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<DumpOptions>();
  auto* command = app.add_subcommand("dump", "Print events, as text or JSON lines (read-only)");
  add_common(*command, *options);
  command->add_option("--from", options->from, "First sequence (default: the first the log holds)")->check(whole_number(1));
  command->add_option("--to", options->to, "Last sequence")->check(whole_number(1));
  command->callback([&exit_code, options] { exit_code = dump(*options); });
}

void add_tail(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<DumpOptions>();
  auto* command = app.add_subcommand("tail", "Follow new events as they become durable, until interrupted (read-only)");
  add_common(*command, *options);
  command->add_option("--from", options->from, "Start at this sequence (a checkpoint), not after what is durable now")
      ->check(whole_number(1));
  command->callback([&exit_code, options] { exit_code = tail(*options); });
}

}  // namespace annal::cli
