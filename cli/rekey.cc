// annal rekey DIR --key-file FILE: seals everything of an encrypted store that is under an older
// master key version again under the key file's newest (engine/rekey.h), so that the older
// versions can be removed from the key file. Offline: the store must not be open elsewhere.
#include <cstdio>
#include <string>

#include "annal/engine/rekey.h"
#include "arguments.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

struct RekeyOptions {
  std::string directory;
  std::string key_file;
};

std::string head_text(const std::optional<journal::ChainHead>& head) {
  return head ? journal::to_string(*head) : "none (the log holds no record)";
}

int run(const RekeyOptions& options) {
  engine::Options opening;
  if (Status keys = use_key_file(options.key_file, opening); !keys.ok()) return fail("rekey", keys);
  auto done = engine::rekey(options.directory, opening);
  if (!done.ok()) return fail("rekey", done.status());
  const engine::RekeyReport& report = done.value();
  if (!report.changed()) {
    std::printf("%s: nothing to do: everything readable is sealed under master key version %u already (%zu segments, "
                "the chain tagged under it); nothing was written\n",
                options.directory.c_str(), report.key_version, report.segments);
    if (report.head_after) std::printf("chain head  %s\n", head_text(report.head_after).c_str());
    return kOk;
  }
  if (report.resumed) std::printf("%s: finished a rekey that was cut short\n", options.directory.c_str());
  std::printf("%s: resealed under master key version %u: %s records in %zu of %zu segments (open number %u), "
              "%zu snapshots%s\n",
              options.directory.c_str(), report.key_version, grouped(report.records_resealed).c_str(),
              report.segments_rewritten, report.segments, report.open_number, report.snapshots_resealed,
              report.key_store_resealed ? ", the key store (KEYS)" : "");
  if (report.records_erased_left > 0) {
    std::printf("%s records of erased streams stay as they were, under older versions: no key opens them (their "
                "streams' seeds are destroyed), so they need none\n",
                grouped(report.records_erased_left).c_str());
  }
  if (report.snapshots_destroyed > 0) {
    std::printf("%zu snapshots sealed under key epochs an erasure ended stay as they are: nobody can open them\n",
                report.snapshots_destroyed);
  }
  std::printf("chain head before  %s\n", head_text(report.head_before).c_str());
  std::printf("chain head after   %s\n", head_text(report.head_after).c_str());
  if (report.head_before && report.head_after && report.head_before->link != report.head_after->link) {
    std::printf("the chain head changed because the records' sealed bytes did (the events did not), and the chain was "
                "linked and tagged anew from the first rewritten segment: a head kept from before no longer verifies; "
                "keep the new one in its place, with this output as the reason\n");
  }
  std::printf("master key versions below %u are no longer needed by this store: remove them from the key file only "
              "once every copy and backup of the store you may need to read has been rekeyed too\n",
              report.key_version);
  return kOk;
}

}  // namespace

void add_rekey(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<RekeyOptions>();
  auto* command = app.add_subcommand(
      "rekey", "Reseal an encrypted store's records, snapshots and key store under the key file's newest master key "
               "version (after annal masterkey --rotate), so the older versions can be retired. Offline");
  command->add_option("directory", options->directory, "The store (not open elsewhere)")->required();
  add_key_file(*command, options->key_file);
  command->callback([&exit_code, options] { exit_code = run(*options); });
}

}  // namespace annal::cli
