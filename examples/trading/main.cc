// annal example: a small exchange in the LMAX style. Random limit orders go through a ring to one
// matching thread, which journals what happens to each book; the "positions" projection follows
// the journal. Then the engine is closed and reopened: the books are rebuilt from the journal and
// the positions restored from a snapshot plus the events after it.
//
//   trading [--orders=N] [--accounts=N] [--symbols=1..8] [--seed=N] [--dir=PATH]
//
// Without --dir it works in a new temporary directory and removes it at the end; with one, it
// keeps the directory, and a second run recovers the books and trades on.
#include <stdlib.h>

#include <annal/engine/engine.h>
#include <annal/ringbuf/ringbuf.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "matcher.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace ae = annal::engine;
namespace rb = annal::ringbuf;

struct Config {
  std::uint64_t orders = 200'000;
  std::uint64_t accounts = 50;
  std::uint64_t symbols = 4;
  std::uint64_t seed = 1;
  std::string dir;
};

bool parse(int argc, char** argv, Config& config) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    if (name == "--dir") {
      config.dir = value;
      continue;
    }
    std::uint64_t* field = name == "--orders" ? &config.orders : name == "--accounts" ? &config.accounts
                           : name == "--symbols" ? &config.symbols : name == "--seed" ? &config.seed : nullptr;
    if (field == nullptr) return false;
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), *field);
    if (error != std::errc() || end != value.data() + value.size() || value.empty()) return false;
  }
  return config.accounts >= 1 && config.accounts <= 1'000'000 && config.symbols >= 1 && config.symbols <= 8;
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::vector<std::string> symbols(std::uint64_t count) {
  const std::vector<std::string> all{"ACME", "BOLT", "CRUX", "DYNA", "ECHO", "FLUX", "GRID", "HALO"};
  return {all.begin(), all.begin() + static_cast<std::ptrdiff_t>(count)};
}

// Feeds `count` random commands through a ring to the matcher, on a thread of its own: the
// business-logic processor. This thread plays the gateway. Returns once all are handled.
void trade(trading::Matcher& matcher, const Config& config, std::uint64_t count) {
  rb::RingBuffer<trading::Command, rb::ProducerType::multi> ring(1 << 14);
  // A batch ends at most every 4096 commands, so the matcher appends at least that often.
  rb::BatchEventProcessor processor(ring, matcher, {}, 4096);
  (void)ring.add_gating_sequence(processor.sequence());
  std::thread business_logic([&] { processor.run(); });
  trading::RandomOrders flow(config.seed, static_cast<std::uint32_t>(config.accounts),
                             static_cast<std::uint16_t>(config.symbols), matcher.next_order_id());
  for (std::uint64_t i = 0; i < count; ++i) {
    if (!ring.publish_event([&](trading::Command& slot, std::int64_t) { slot = flow.next(); })) break;
  }
  while (processor.sequence().get() < ring.cursor().get()) std::this_thread::sleep_for(1ms);
  processor.halt();
  business_logic.join();
}

struct Exchange {
  std::unique_ptr<ae::Engine> engine;
  std::unique_ptr<trading::Matcher> matcher;
};

// What every start of the exchange does: open the engine, bring the positions up to date
// (restored from a snapshot, then the events after it), rebuild the books. Says what each cost.
annal::Result<Exchange> open_exchange(const Config& config) {
  auto start = Clock::now();
  auto engine = ae::Engine::open(config.dir, {});
  if (!engine.ok()) return engine.status();
  const ae::OpenReport& report = engine.value()->open_report();
  std::printf("  engine: opened in %.1f ms (its state snapshot at sequence %llu, %llu journal records after it)\n",
              ms_since(start), static_cast<unsigned long long>(report.state_snapshot),
              static_cast<unsigned long long>(report.records_replayed));
  Exchange exchange{std::move(engine.value()), nullptr};

  start = Clock::now();
  // A snapshot every 50,000 events: a restart replays at most about that many.
  annal::Status ready = exchange.engine->add_projection("positions", std::make_shared<trading::Positions>(),
                                                        {.snapshot_every_events = 50'000});
  // Read your writes, on a start: wait until it has applied everything the journal holds.
  if (ready.ok()) ready = exchange.engine->query("positions", exchange.engine->last_sequence(), [](auto&) {}, 60s);
  auto status = exchange.engine->projection_status("positions");
  if (!ready.ok() || !status.ok()) return ready.ok() ? status.status() : ready;
  std::printf("  positions: restored from the snapshot at sequence %llu, then %llu events replayed: %.1f ms\n",
              static_cast<unsigned long long>(status.value().restored_from),
              static_cast<unsigned long long>(status.value().replayed), ms_since(start));

  start = Clock::now();
  exchange.matcher = std::make_unique<trading::Matcher>(*exchange.engine, symbols(config.symbols));
  auto folded = exchange.matcher->recover();
  if (!folded.ok()) return folded.status();
  std::size_t resting = 0;
  for (std::size_t b = 0; b < config.symbols; ++b) resting += exchange.matcher->book(b).resting();
  std::printf("  books: %llu events folded in %.1f ms, %zu orders resting\n",
              static_cast<unsigned long long>(folded.value()), ms_since(start), resting);
  return exchange;
}

// A few accounts' positions, and the check that every trade moved units and cash between two
// accounts: per symbol the units, and all the cash, sum to zero.
std::string describe(const trading::Positions& positions, const std::vector<std::string>& names) {
  std::string out = "  account        cash";
  for (const auto& name : names) out += "     " + name;
  std::vector<std::int64_t> units_sum(names.size(), 0);
  std::int64_t cash_sum = 0;
  int row = 0;
  for (const auto& [id, account] : positions.accounts()) {
    cash_sum += account.cash;
    char line[64];
    std::snprintf(line, sizeof line, "\n  %7u %11.2f", id, static_cast<double>(account.cash) / 100);
    if (row < 5) out += line;
    for (std::size_t s = 0; s < names.size(); ++s) {
      const auto units = account.units.find(names[s]);
      const std::int64_t held = units == account.units.end() ? 0 : units->second;
      units_sum[s] += held;
      std::snprintf(line, sizeof line, " %+8lld", static_cast<long long>(held));
      if (row < 5) out += line;
    }
    ++row;
  }
  const bool balanced = cash_sum == 0 && std::ranges::all_of(units_sum, [](std::int64_t u) { return u == 0; });
  out += "\n  (" + std::to_string(row) + " accounts, " + std::to_string(positions.trades()) + " trades) " +
         (balanced ? "units sum to 0 per symbol, cash sums to 0: ok" : "UNBALANCED");
  return out;
}

// What the first start leaves behind, to compare the second with.
struct Before {
  std::uint64_t last_sequence = 0;
  std::vector<std::byte> positions;  // the projection's snapshot bytes
  std::vector<trading::OrderBook> books;
};

// The first start: trade, read the positions back, close.
annal::Result<Before> trade_and_close(const Config& config) {
  std::printf("start:\n");
  auto opened = open_exchange(config);
  if (!opened.ok()) return opened.status();
  ae::Engine& engine = *opened.value().engine;
  trading::Matcher& matcher = *opened.value().matcher;

  const auto start = Clock::now();
  trade(matcher, config, config.orders);
  const double seconds = ms_since(start) / 1000;
  if (!matcher.failure().ok()) return matcher.failure();
  const trading::MatcherStats& stats = matcher.stats();
  std::printf("matched %llu commands in %.2f s: %.0f commands/s, %.0f trades/s\n"
              "  %llu accepted, %llu cancelled, %llu refused; %llu trades; %llu events in %llu appends\n",
              static_cast<unsigned long long>(config.orders), seconds, static_cast<double>(config.orders) / seconds,
              static_cast<double>(stats.trades) / seconds, static_cast<unsigned long long>(stats.accepted),
              static_cast<unsigned long long>(stats.cancelled), static_cast<unsigned long long>(stats.rejected),
              static_cast<unsigned long long>(stats.trades), static_cast<unsigned long long>(stats.events),
              static_cast<unsigned long long>(stats.appends));

  // Read your writes: the query runs once the projection has applied the matcher's last append.
  Before before;
  before.last_sequence = matcher.last_receipt() ? matcher.last_receipt()->last_sequence : engine.last_sequence();
  const auto names = matcher.symbols();
  auto seen = ae::query<trading::Positions>(
      engine, "positions", before.last_sequence,
      [&](const trading::Positions& p) { return std::pair(describe(p, names), p.snapshot()); }, 30s);
  if (!seen.ok()) return seen.status();
  std::printf("positions at sequence %llu (read your writes):\n%s\n",
              static_cast<unsigned long long>(before.last_sequence), seen.value().first.c_str());
  before.positions = std::move(seen.value().second);
  for (std::size_t b = 0; b < names.size(); ++b) before.books.push_back(matcher.book(b));
  // close() makes everything durable and runs the last durability callbacks.
  if (annal::Status closed = engine.close(); !closed.ok()) return closed;
  std::printf("closed: %llu of %llu events reported durable through on_durable (the matcher never waited)\n",
              static_cast<unsigned long long>(matcher.durable_events()), static_cast<unsigned long long>(stats.events));
  return before;
}

// The second start: the books rebuilt from the journal, the positions from a snapshot and the
// events after it. Returns whether both came back as they were.
annal::Result<bool> reopen_and_compare(const Config& config, const Before& before) {
  std::printf("restart:\n");
  auto opened = open_exchange(config);
  if (!opened.ok()) return opened.status();
  bool same_books = true;
  for (std::size_t b = 0; b < before.books.size(); ++b) {
    same_books = same_books && opened.value().matcher->book(b) == before.books[b];
  }
  auto positions = ae::query<trading::Positions>(*opened.value().engine, "positions", before.last_sequence,
                                                 [](const trading::Positions& p) { return p.snapshot(); }, 30s);
  if (!positions.ok()) return positions.status();
  const bool same_positions = positions.value() == before.positions;
  std::printf("  compared with before the restart: books %s, positions %s\n", same_books ? "identical" : "DIFFERENT",
              same_positions ? "identical" : "DIFFERENT");
  return same_books && same_positions;
}

int run(const Config& config) {
  auto before = trade_and_close(config);
  if (!before.ok()) return std::fprintf(stderr, "trading: %s\n", before.status().to_string().c_str()), 1;
  auto same = reopen_and_compare(config, before.value());
  if (!same.ok()) return std::fprintf(stderr, "trading: %s\n", same.status().to_string().c_str()), 1;
  return same.value() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  if (!parse(argc, argv, config)) {
    std::fprintf(stderr, "usage: trading [--orders=N] [--accounts=N] [--symbols=1..8] [--seed=N] [--dir=PATH]\n");
    return 2;
  }
  const bool temporary = config.dir.empty();
  if (temporary) {
    std::string pattern = (std::filesystem::temp_directory_path() / "annal-trading-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) return 1;
    config.dir = pattern;
  }
  const int code = run(config);
  if (temporary) std::filesystem::remove_all(config.dir);
  return code;
}
