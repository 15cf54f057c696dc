// annal verify DIR [--payloads] [--chain [--expect HEAD [--expect-tag TAG] [--expect-signature SIG --sign-key FILE]]]:
// checks every record's checksum and sequence, every segment's continuity, every snapshot, and
// every event's names and versions; exit
// 0 only if all is sound. With --payloads, also every payload byte against what `annal load`
// wrote. With --chain, the hash chain too (every link recomputed; the tags, given the key file),
// and with --expect, that the log still reaches a head `annal inspect --chain` printed earlier;
// with --expect-tag, that the kept head's tag is that head's under one of the key file's master
// keys (a head replaced by someone without them does not pass); with --expect-signature, that its
// signature is that head's under one of the signing key file's versions (the same, against
// whoever holds the master keys too).
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "annal/crypto/digest.h"
#include "annal/engine/engine.h"
#include "annal/journal/inspect.h"
#include "annal/snapshots/snapshot_store.h"
#include "arguments.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

using Clock = engine::Engine::Clock;

// Reads every event through the engine, which checks its metadata and names as it decodes it, and
// checks that each stream's versions run 0, 1, 2... (and the payloads, if asked).
void check_events(engine::Engine& store, std::uint64_t from, std::uint64_t last, bool payloads,
                  std::vector<std::string>& problems) {
  auto subscription = store.subscribe(from);
  if (!subscription.ok()) {
    problems.push_back(subscription.status().to_string());
    return;
  }
  std::unordered_map<std::uint64_t, std::uint64_t> next_version;
  Progress progress("verify events", last >= from ? last - from + 1 : 0);
  while (subscription.value()->position() <= last) {
    auto event = subscription.value()->next(Clock::now() + std::chrono::seconds(5));
    // Past `last` already: the records it ended with were the engine's own (an erasure), not events.
    if (event.code() == ErrorCode::timed_out && subscription.value()->position() > last) break;
    if (!event.ok()) {
      problems.push_back("reading at sequence " + std::to_string(subscription.value()->position()) + ": " +
                         event.status().to_string());
      return;
    }
    const engine::EventHeader& header = event.value().header;
    const auto [expected, fresh] = next_version.try_emplace(header.stream_id, header.version);
    if (!fresh && header.version != expected->second) {
      problems.push_back("sequence " + std::to_string(header.sequence) + ": stream " + std::to_string(header.stream_id) +
                         " version " + std::to_string(header.version) + ", expected " + std::to_string(expected->second));
    }
    expected->second = header.version + 1;
    if (payloads && !header.erased) {  // an erased event's payload is gone with its key
      const std::string stream = header.stream_name.empty() ? std::to_string(header.stream_id) : std::string(header.stream_name);
      const auto wanted = load_payload(stream, header.version, event.value().payload.size());
      if (!std::equal(wanted.begin(), wanted.end(), event.value().payload.begin())) {
        problems.push_back("sequence " + std::to_string(header.sequence) + ": the payload of " + stream + " version " +
                           std::to_string(header.version) + " is not what annal load wrote");
      }
    }
    progress.update(header.sequence - from + 1);
  }
}

struct VerifyOptions {
  std::string directory;
  bool payloads = false;
  bool chain = false;
  std::string expect;
  std::string expect_tag;
  std::string key_file;
  std::string expect_signature;
  std::string sign_key;
};

// What a kept head's tag or signature is checked under.
struct KeptMark {
  std::string_view what;   // "tag", "signature"
  std::string_view flag;   // its option
  std::string_view under;  // "master key", "signing key"
  std::string_view file;   // the key file's option
};

// Whether `mark` (hex) is the head's under one of `keys`' versions, from `newest` down: a kept head
// could itself have been replaced, by someone who edited the log and recomputed its links, which
// needs no key; its tag needs the master key, its signature the signing key.
void check_kept(const journal::ChainHead& head, const std::string& mark, const KeptMark& kind, const journal::ChainKeys& keys,
                std::uint32_t newest, std::vector<std::string>& problems) {
  const auto expected = crypto::digest_from_hex(mark);
  if (!expected) {
    problems.push_back(std::string(kind.flag) + " " + mark + " is not a " + std::string(kind.what) +
                       " (64 hex digits, from annal inspect --chain)");
    return;
  }
  for (std::uint32_t version = newest; version >= 1; --version) {
    const std::optional<crypto::Key> key = keys(version);
    if (key && crypto::equal_digests(journal::chain_head_tag(head, *key), *expected)) {
      std::printf("chain: the expected head's %s is its own under %s version %u\n", std::string(kind.what).c_str(),
                  std::string(kind.under).c_str(), version);
      return;
    }
  }
  problems.push_back("the expected head's " + std::string(kind.what) + " is not that head's under any " +
                     std::string(kind.under) + " version of " + std::string(kind.file) + ": the head or " +
                     std::string(kind.what) + " kept was changed, or made without the " + std::string(kind.under) +
                     ". Trust neither it nor this log's chain until you know which, and compare with a head kept elsewhere");
}

void check_kept_marks(const VerifyOptions& options, const journal::ChainHead& head, const engine::Options& opening,
                      std::vector<std::string>& problems) {
  if (!options.expect_tag.empty()) {
    if (!opening.encryption) {
      problems.push_back("--expect-tag needs the store's master keys to check the tag with: give --key-file");
    } else {
      check_kept(head, options.expect_tag, {"tag", "--expect-tag", "master key", "the key file"}, chain_keys(opening),
                 opening.encryption->current_version(), problems);
    }
  }
  if (!options.expect_signature.empty()) {
    auto signing = load_signing_keys(options.sign_key);
    if (!signing.ok()) {
      problems.push_back("--sign-key: " + signing.status().to_string());
    } else {
      check_kept(head, options.expect_signature, {"signature", "--expect-signature", "signing key", "--sign-key"},
                 signing.value().keys, signing.value().newest, problems);
    }
  }
}

void check_chain(const VerifyOptions& options, const engine::Options& opening, std::vector<std::string>& problems) {
  journal::ChainCheck check{.keys = chain_keys(opening), .expected = std::nullopt};
  if (!options.expect.empty()) check.expected = journal::parse_chain_head(options.expect);
  if (check.expected) check_kept_marks(options, *check.expected, opening, problems);
  auto report = journal::verify_chain(options.directory, check);
  if (!report.ok()) {
    problems.push_back("chain: " + report.status().to_string());
    return;
  }
  for (const std::string& note : report.value().notes) std::printf("note: chain: %s\n", note.c_str());
  problems.insert(problems.end(), report.value().problems.begin(), report.value().problems.end());
  std::printf("chain: %zu entries, %zu links recomputed, %zu tags checked, head %s\n", report.value().entries,
              report.value().checked, report.value().tags_checked,
              report.value().head ? journal::to_string(*report.value().head).c_str() : "none (no record)");
}

int run(const VerifyOptions& options) {
  const std::string& directory = options.directory;
  std::vector<std::string> problems;
  auto journal = journal::inspect_directory(directory, true);
  if (!journal.ok()) return fail("verify", journal.status());
  for (const journal::SegmentReport& segment : journal.value().segments) {
    if (segment.health == journal::SegmentHealth::torn_tail) std::printf("note: %s\n", segment.problem.c_str());
  }
  problems = journal.value().problems;

  engine::Options opening;
  if (Status keys = use_key_file(options.key_file, opening); !keys.ok()) return fail("verify", keys);
  auto opened = engine::Engine::open_read_only(directory, opening);
  // The snapshots' states are checked through the engine, which has the keys a sealed one needs;
  // when it cannot open (that is the problem reported), their headers only.
  auto snapshots = opened.ok() ? opened.value()->inspect_snapshots(true)
                               : snapshots::SnapshotStore(directory, journal::make_posix_backend(), 1).inspect(false);
  if (!snapshots.ok()) return fail("verify", snapshots.status());
  for (const auto& snapshot : snapshots.value()) {
    // Sealed under a key an erasure destroyed: unreadable on purpose, and nothing recovery needs.
    if (snapshot.status.code() == ErrorCode::not_found) continue;
    if (!snapshot.status.ok()) problems.push_back(snapshot.status.to_string());
  }
  if (options.chain) check_chain(options, opening, problems);
  if (!opened.ok()) {
    problems.push_back(opened.status().to_string());
  } else {
    if (const std::string& lost = opened.value()->open_report().data_loss; !lost.empty()) problems.push_back(lost);
    if (journal.value().last_sequence != 0) {
        check_events(*opened.value(), journal.value().first_sequence, opened.value()->durable_sequence(), options.payloads,
                   problems);
    }
  }
  for (const std::string& problem : problems) std::fprintf(stderr, "annal verify: %s\n", problem.c_str());
  std::printf("%s: %zu segments, sequences %s..%s, %zu snapshots: %s\n", directory.c_str(),
              journal.value().segments.size(), grouped(journal.value().first_sequence).c_str(),
              grouped(journal.value().last_sequence).c_str(), snapshots.value().size(),
              problems.empty() ? "sound" : (std::to_string(problems.size()) + (problems.size() == 1 ? " problem" : " problems")).c_str());
  return problems.empty() ? kOk : kFailed;
}

// A kept tag or signature given empty (a script's variable that came out so) is refused, not
// taken for "nothing to check".
CLI::Validator not_empty(const std::string& what) {
  return CLI::Validator([what](std::string& text) { return text.empty() ? what + " is empty" : std::string(); }, what);
}

}  // namespace

void add_verify(CLI::App& app, int& exit_code) {
  auto* command = app.add_subcommand("verify", "Check every checksum, sequence, snapshot and event (read-only)");
  auto options = std::make_shared<VerifyOptions>();
  command->add_option("dir", options->directory, "The store's directory")->required();
  command->add_flag("--payloads", options->payloads, "Also check every payload against what annal load wrote");
  auto* chain = command->add_flag("--chain", options->chain,
                                  "Also the hash chain: every link recomputed, the tags checked with --key-file");
  command
      ->add_option("--expect", options->expect,
                   "A chain head (SEQUENCE:HEX, from annal inspect --chain) the log must still reach unchanged")
      ->needs(chain)
      ->check(CLI::Validator(
          [](std::string& text) {
            return journal::parse_chain_head(text) ? std::string() : "not a chain head (SEQUENCE:64 hex digits): " + text;
          },
          "HEAD"));
  command
      ->add_option("--expect-tag", options->expect_tag,
                   "The tag annal inspect --chain --key-file printed with that head: checked under the key file's master keys")
      ->needs("--expect")
      ->check(not_empty("TAG"));
  auto* sign_key = add_sign_key(*command, options->sign_key);
  command
      ->add_option("--expect-signature", options->expect_signature,
                   "The signature annal inspect --chain --sign-key printed with that head: checked under --sign-key")
      ->needs("--expect")
      ->check(not_empty("SIGNATURE"))
      ->needs(sign_key);
  add_key_file(*command, options->key_file);
  command->callback([&exit_code, options] { exit_code = run(*options); });
}

}  // namespace annal::cli
