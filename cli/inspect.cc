// annal inspect DIR [--json] [--chain [--sign-key FILE]]: what a store holds, read without the lock
// and without changing it; with --chain, only the head of its hash chain (to keep, and give to
// annal verify --chain --expect later), tagged under the chain key when the master keys are given,
// and signed under a key of its own with --sign-key.
#include <cstdio>
#include <string>

#include "annal/engine/engine.h"
#include "annal/journal/inspect.h"
#include "annal/snapshots/snapshot_store.h"
#include "arguments.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

struct Inspected {
  std::unique_ptr<engine::Engine> engine;
  journal::DirectoryReport journal;
  std::vector<snapshots::SnapshotStore::FileReport> snapshots;
};

// "intact" only for what was read and checked: a sealed segment taken from its index file was not.
const char* health_name(const journal::SegmentReport& segment) {
  switch (segment.health) {
    case journal::SegmentHealth::intact: return segment.verified ? "intact" : "not_checked";
    case journal::SegmentHealth::torn_tail: return "torn_tail";
    case journal::SegmentHealth::corrupt: return "corrupt";
  }
  return "?";
}

void print_json(const std::string& directory, const Inspected& in) {
  const journal::DirectoryReport& j = in.journal;
  std::string out = "{\"directory\":" + json_string(directory) + ",\"events\":" + std::to_string(in.engine->event_count()) +
                    ",\"streams\":" + std::to_string(in.engine->stream_count()) +
                    ",\"event_types\":" + std::to_string(in.engine->event_type_count()) +
                    ",\"first_sequence\":" + std::to_string(j.first_sequence) +
                    ",\"last_sequence\":" + std::to_string(j.last_sequence) +
                    ",\"durable_sequence\":" + std::to_string(in.engine->durable_sequence()) +
                    ",\"bytes\":" + std::to_string(j.bytes) + ",\"segments\":[";
  for (std::size_t i = 0; i < j.segments.size(); ++i) {
    const journal::SegmentReport& s = j.segments[i];
    out += (i == 0 ? "" : ",") + std::string("{\"file\":") + json_string(s.file) + ",\"base\":" + std::to_string(s.base) +
           ",\"last_sequence\":" + std::to_string(s.end_sequence - 1) + ",\"bytes\":" + std::to_string(s.bytes) +
           ",\"used_bytes\":" + std::to_string(s.used_bytes) + ",\"health\":\"" + health_name(s) + "\"}";
  }
  out += "],\"snapshots\":[";
  for (std::size_t i = 0; i < in.snapshots.size(); ++i) {
    const auto& s = in.snapshots[i];
    out += (i == 0 ? "" : ",") + std::string("{\"file\":") + json_string(s.file) +
           ",\"projection\":" + json_string(s.header.name) + ",\"sequence\":" + std::to_string(s.header.sequence) +
           ",\"schema\":" + std::to_string(s.header.schema) + ",\"created_ns\":" + std::to_string(s.header.created_ns) +
           ",\"bytes\":" + std::to_string(s.bytes) + ",\"ok\":" + (s.status.ok() ? "true" : "false") + "}";
  }
  out += "],\"problems\":[";
  for (std::size_t i = 0; i < j.problems.size(); ++i) out += (i == 0 ? "" : ",") + json_string(j.problems[i]);
  out += "]}";
  std::puts(out.c_str());
}

void print_text(const std::string& directory, const Inspected& in) {
  const journal::DirectoryReport& j = in.journal;
  std::printf("directory   %s\n", directory.c_str());
  std::printf("events      %s in %s streams, %s event types\n", grouped(in.engine->event_count()).c_str(),
              grouped(in.engine->stream_count()).c_str(), grouped(in.engine->event_type_count()).c_str());
  std::printf("sequences   %s .. %s (durable %s)\n", grouped(j.first_sequence).c_str(), grouped(j.last_sequence).c_str(),
              grouped(in.engine->durable_sequence()).c_str());
  std::printf("journal     %zu segments, %s\n\n", j.segments.size(), human_bytes(j.bytes).c_str());
  std::printf("%-26s %14s %14s %10s  %s\n", "segment", "first", "last", "size", "health");
  for (const journal::SegmentReport& s : j.segments) {
    std::printf("%-26s %14s %14s %10s  %s\n", s.file.c_str(), grouped(s.base).c_str(),
                grouped(s.end_sequence - 1).c_str(), human_bytes(s.used_bytes).c_str(), health_name(s));
  }
  if (!in.snapshots.empty()) {
    std::printf("\n%-24s %14s %7s %6s %10s\n", "snapshot of", "sequence", "schema", "age", "size");
    for (const auto& s : in.snapshots) {
      std::printf("%-24s %14s %7u %6s %10s%s\n", s.header.name.c_str(), grouped(s.header.sequence).c_str(),
                  s.header.schema, s.status.ok() ? human_age(s.header.created_ns).c_str() : "-",
                  human_bytes(s.bytes).c_str(), s.status.ok() ? "" : "  damaged: run annal verify");
    }
  }
  for (const std::string& problem : j.problems) std::printf("problem: %s\n", problem.c_str());
}

struct InspectOptions {
  std::string directory;
  bool json = false;
  bool chain = false;
  std::string key_file;
  std::string sign_key;
};

// HMAC-SHA256 of a head under `keys`' key of `version`, with that version.
Result<std::pair<std::uint32_t, crypto::Digest>> head_tag(const journal::ChainHead& head, std::uint32_t version,
                                                          const journal::ChainKeys& keys, const std::string& whose) {
  const auto key = keys(version);
  if (!key) return Status(ErrorCode::not_found, "the " + whose + " of version " + std::to_string(version) + " cannot be had");
  return std::make_pair(version, journal::chain_head_tag(head, *key));
}

// The head at the durable sequence: a record past it may still be taken back by a power cut, and
// a head that the log then no longer reaches would read as tampering.
int print_chain(const InspectOptions& options, engine::Engine& store, const engine::Options& opening) {
  const std::uint64_t durable = store.durable_sequence();
  if (durable == 0) return fail("inspect", Status(ErrorCode::not_found, options.directory + ": the log holds no record yet"));
  const auto head = journal::chain_head(options.directory, durable);
  if (!head.ok()) return fail("inspect", head.status());
  std::optional<std::pair<std::uint32_t, crypto::Digest>> tag, signature;
  if (const journal::ChainKeys keys = chain_keys(opening)) {
    auto tagged = head_tag(head.value(), opening.encryption->current_version(), keys, "chain key of master key");
    if (!tagged.ok()) return fail("inspect", tagged.status());
    tag = tagged.value();
  }
  if (!options.sign_key.empty()) {
    auto signing = load_signing_keys(options.sign_key);
    if (!signing.ok()) return fail("inspect", signing.status());
    auto signed_head = head_tag(head.value(), signing.value().newest, signing.value().keys, "signing key");
    if (!signed_head.ok()) return fail("inspect", signed_head.status());
    signature = signed_head.value();
  }
  if (options.json) {
    std::string out = "{\"chain_head\":" + json_string(journal::to_string(head.value()));
    if (tag) out += ",\"key_version\":" + std::to_string(tag->first) + ",\"chain_tag\":" + json_string(crypto::to_hex(tag->second));
    if (signature) {
      out += ",\"signing_key_version\":" + std::to_string(signature->first) +
             ",\"signature\":" + json_string(crypto::to_hex(signature->second));
    }
    std::puts((out + "}").c_str());
  } else {
    std::printf("chain head  %s\n", journal::to_string(head.value()).c_str());
    if (tag) std::printf("chain tag   %s (HMAC-SHA256 under the chain key of master key version %u)\n",
                         crypto::to_hex(tag->second).c_str(), tag->first);
    if (signature) std::printf("signature   %s (HMAC-SHA256 under version %u of the signing key file)\n",
                               crypto::to_hex(signature->second).c_str(), signature->first);
  }
  return kOk;
}

int run(const InspectOptions& options) {
  const std::string& directory = options.directory;
  Inspected in;
  engine::Options opening;
  if (Status keys = use_key_file(options.key_file, opening); !keys.ok()) return fail("inspect", keys);
  auto opened = engine::Engine::open_read_only(directory, opening);
  if (!opened.ok()) return fail("inspect", opened.status());
  in.engine = std::move(opened.value());
  if (options.chain) return print_chain(options, *in.engine, opening);
  auto report = journal::inspect_directory(directory, false);
  if (!report.ok()) return fail("inspect", report.status());
  in.journal = std::move(report.value());
  // Acknowledged events missing (a deleted newest segment): the segments alone look sound.
  if (const std::string& lost = in.engine->open_report().data_loss; !lost.empty()) in.journal.problems.push_back(lost);
  auto snapshots = in.engine->inspect_snapshots(false);
  if (!snapshots.ok()) return fail("inspect", snapshots.status());
  in.snapshots = std::move(snapshots.value());
  if (options.json) {
    print_json(directory, in);
  } else {
    print_text(directory, in);
  }
  // The report is printed either way; the exit code tells a script whether to look closer.
  if (!in.journal.problems.empty()) {
    return fail("inspect", std::to_string(in.journal.problems.size()) + " problem(s), the first: " +
                               in.journal.problems.front() + " (annal verify checks everything)");
  }
  return kOk;
}

}  // namespace

void add_inspect(CLI::App& app, int& exit_code) {
  auto* command = app.add_subcommand("inspect", "Segments, events, streams and snapshots of a store (read-only)");
  auto options = std::make_shared<InspectOptions>();
  command->add_option("dir", options->directory, "The store's directory")->required();
  command->add_flag("--json", options->json, "One JSON object (documented in README.md)");
  command->add_flag("--chain", options->chain,
                    "Only the hash chain's head at the durable sequence (SEQUENCE:HEX), to keep for annal verify "
                    "--chain --expect; tagged under the chain key with --key-file");
  add_key_file(*command, options->key_file);
  add_sign_key(*command, options->sign_key);  // used with --chain only
  command->callback([&exit_code, options] { exit_code = run(*options); });
}

}  // namespace annal::cli
