// The subcommands. Each adds itself to the app; when chosen, its callback runs it and stores the
// process's exit code in `exit_code`.
#pragma once

#include <CLI/CLI.hpp>

namespace annal::cli {

void add_inspect(CLI::App& app, int& exit_code);
void add_verify(CLI::App& app, int& exit_code);
void add_load(CLI::App& app, int& exit_code);
void add_dump(CLI::App& app, int& exit_code);
void add_tail(CLI::App& app, int& exit_code);
void add_import(CLI::App& app, int& exit_code);
void add_serve(CLI::App& app, int& exit_code);
void add_keygen(CLI::App& app, int& exit_code);
void add_masterkey(CLI::App& app, int& exit_code);
void add_erase(CLI::App& app, int& exit_code);
void add_rekey(CLI::App& app, int& exit_code);
void add_pg_status(CLI::App& app, int& exit_code);
void add_export(CLI::App& app, int& exit_code);
// `export rabbitmq`, a subcommand of `export` (which add_export makes).
void add_export_rabbitmq(CLI::App& export_command, int& exit_code);
// `import kafka`, a subcommand of `import`.
void add_import_kafka(CLI::App& import, int& exit_code);

}  // namespace annal::cli
