// annal pg-status DIR CONNINFO: each PostgreSQL projection's checkpoint (connectors/postgres)
// against the store's durable log: how far behind it is, or that its tables belong to another
// store (a checkpoint past this log's end). Read-only on both sides.
#include <cstdio>
#include <string>

#include "annal/engine/engine.h"
#include "annal/postgres/postgres_projection.h"
#include "arguments.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

struct PgStatusOptions {
  std::string directory;
  std::string conninfo;
  std::string key_file;
};

int run(const PgStatusOptions& options) {
  engine::Options opening;
  if (Status keys = use_key_file(options.key_file, opening); !keys.ok()) return fail("pg-status", keys);
  auto opened = engine::Engine::open_read_only(options.directory, opening);
  if (!opened.ok()) return fail("pg-status", opened.status());
  const std::uint64_t durable = opened.value()->durable_sequence();
  auto checkpoints = postgres::read_checkpoints(options.conninfo);
  if (!checkpoints.ok()) return fail("pg-status", checkpoints.status());
  if (checkpoints.value().empty()) {
    std::printf("no PostgreSQL projection has a checkpoint in that database (table annal_checkpoints)\n");
    return kOk;
  }
  std::printf("store durable to %s\n\n%-24s %14s %14s  %s\n", grouped(durable).c_str(), "projection", "checkpoint", "behind",
              "state");
  int foreign = 0;
  for (const postgres::Checkpoint& checkpoint : checkpoints.value()) {
    const bool ahead = checkpoint.sequence > durable;
    foreign += ahead ? 1 : 0;
    std::printf("%-24s %14s %14s  %s\n", checkpoint.projection.c_str(), grouped(checkpoint.sequence).c_str(),
                ahead ? "-" : grouped(durable - checkpoint.sequence).c_str(),
                ahead ? "past this store's log: its tables belong to another store"
                      : checkpoint.sequence == durable ? "caught up" : "behind");
  }
  if (foreign > 0) return fail("pg-status", std::to_string(foreign) + " projection(s) past this store's log");
  return kOk;
}

}  // namespace

void add_pg_status(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<PgStatusOptions>();
  auto* command = app.add_subcommand(
      "pg-status", "Each PostgreSQL projection's checkpoint against the store's durable log (read-only)");
  command->add_option("directory", options->directory, "The store")->required();
  command->add_option("conninfo", options->conninfo,
                      "libpq connection string of the projections' database (host=... dbname=..., postgresql://...)")
      ->required();
  add_key_file(*command, options->key_file);
  command->callback([&exit_code, options] { exit_code = run(*options); });
}

}  // namespace annal::cli
