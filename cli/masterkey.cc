// annal masterkey FILE: makes a master key file (crypto::KeyFile) for encrypted stores, the file
// every command takes as --key-file: one fresh random key, version 1, mode 0600; an existing file is
// never overwritten. annal masterkey FILE --rotate: adds the next version, which becomes current
// (new data is sealed under it; the older versions stay, for the data sealed under them).
#include <cstdio>
#include <string>

#include "annal/crypto/key_file.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

struct MasterkeyOptions {
  std::string file;
  bool rotate = false;
};

int run(const MasterkeyOptions& options) {
  if (options.rotate) {
    auto version = crypto::add_key_version(options.file);
    if (!version.ok()) return fail("masterkey", version.status());
    std::printf("%s: added master key version %u, now the current one (new data is sealed under it; the older "
                "versions stay in the file for the data sealed under them)\n",
                options.file.c_str(), version.value());
  } else {
    if (Status made = crypto::generate_key_file(options.file); !made.ok()) return fail("masterkey", made);
    std::printf("%s: made a new master key file (version 1, mode 0600); open stores with --key-file %s\n",
                options.file.c_str(), options.file.c_str());
  }
  std::printf("keep a copy somewhere safe, apart from the stores: losing this file loses every event sealed with it\n");
  return kOk;
}

}  // namespace

void add_masterkey(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<MasterkeyOptions>();
  auto* command = app.add_subcommand(
      "masterkey", "Make a master key file for encrypted stores (--key-file), or add the next key version to one");
  command->add_option("file", options->file, "The key file (created with mode 0600; never overwritten)")->required();
  command->add_flag("--rotate", options->rotate,
                    "Add the next key version to the existing FILE and make it current (the older ones stay)");
  command->callback([&exit_code, options] { exit_code = run(*options); });
}

}  // namespace annal::cli
