// annal: look inside a store, check it, and move events in and out of it from the shell.
// `annal --help` and `annal COMMAND --help` describe each command; README.md has the reference.
#include <CLI/CLI.hpp>

#include "commands.h"
#include "output.h"

int main(int argc, char** argv) {
  CLI::App app{"annal: inspect, verify, dump, import, tail and load an annal event store"};
  app.require_subcommand(1);
  int exit_code = annal::cli::kOk;
  annal::cli::add_inspect(app, exit_code);
  annal::cli::add_verify(app, exit_code);
  annal::cli::add_dump(app, exit_code);
  annal::cli::add_tail(app, exit_code);
  annal::cli::add_import(app, exit_code);
  annal::cli::add_load(app, exit_code);
  annal::cli::add_serve(app, exit_code);
  annal::cli::add_keygen(app, exit_code);
  annal::cli::add_masterkey(app, exit_code);
  annal::cli::add_erase(app, exit_code);
  annal::cli::add_rekey(app, exit_code);
  annal::cli::add_pg_status(app, exit_code);
  annal::cli::add_export(app, exit_code);
  annal::cli::add_export_rabbitmq(*app.get_subcommand("export"), exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& done) {  // --help
    return app.exit(done);
  } catch (const CLI::ParseError& error) {
    // Bad usage exits 2 (README, output.h), whatever CLI11's own number for the kind of mistake.
    (void)app.exit(error);
    return annal::cli::kUsage;
  }
  return exit_code;
}
