// orders: the seed documents' shop on annal. See README.md.
//
//   orders run DIR [--orders N] [--writers W] [--keep-going]   a load of orders, then a report
//   orders recover DIR                                        reopen after a crash, and how long it took
//   orders query DIR ORDER                                     an order's status and history, and revenue
//   orders create|pay|refund DIR ORDER AMOUNT                  one command
//   orders serve DIR [--listen ADDR:PORT] [--keys FILE] [--tls-cert FILE --tls-key FILE]
//                    [--postgres CONNINFO]                     the seeds' HTTP service (http.h); with
//                                                              the orders table in PostgreSQL too
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/server/serve_command.h"
#include "http.h"
#include "orders.h"

namespace {

using annal::engine::Engine;
using annal::engine::ExpectedVersion;
using Clock = Engine::Clock;
using namespace std::chrono_literals;

constexpr const char* kUsage =
    "usage: orders run DIR [--orders N] [--writers W] [--keep-going]\n"
    "       orders recover DIR\n"
    "       orders query DIR ORDER\n"
    "       orders create|pay|refund DIR ORDER AMOUNT\n"
    "       orders serve DIR [--listen ADDR:PORT] [--keys FILE] [--tls-cert FILE --tls-key FILE]\n"
    "                        [--postgres CONNINFO]\n";

int fail(const annal::Status& status) {
  std::fprintf(stderr, "orders: %s\n", status.to_string().c_str());
  return 1;
}

double ms_since(Clock::time_point start) { return std::chrono::duration<double, std::milli>(Clock::now() - start).count(); }

std::string money(std::int64_t cents) {
  char out[32];
  std::snprintf(out, sizeof(out), "%lld.%02lld", static_cast<long long>(cents / 100), static_cast<long long>(cents % 100));
  return out;
}

// The store with both read models, snapshotted so that recovery replays a bounded tail.
annal::Result<std::unique_ptr<Engine>> open_store(const std::string& directory) {
  auto engine = Engine::open(directory, {});
  if (!engine.ok()) return engine.status();
  const annal::engine::ProjectionOptions snapshots{.snapshot_every_events = 250'000, .snapshot_every = 10s};
  for (const auto& [name, projection] :
       {std::pair<const char*, std::shared_ptr<annal::engine::Projection>>{"orders", std::make_shared<orders::OrdersView>()},
        {"revenue", std::make_shared<orders::Revenue>()}}) {
    if (annal::Status added = engine.value()->add_projection(name, projection, snapshots); !added.ok()) return added;
  }
  return engine;
}

// Latencies in ms, appended from several threads.
struct Latencies {
  std::mutex mutex;
  std::vector<double> ms;
  void add(double value) {
    std::lock_guard lock(mutex);
    ms.push_back(value);
  }
  std::string percentiles() {
    std::lock_guard lock(mutex);
    if (ms.empty()) return "-";
    std::sort(ms.begin(), ms.end());
    const auto at = [&](double p) { return ms[static_cast<std::size_t>(p * static_cast<double>(ms.size() - 1))]; };
    char out[96];
    std::snprintf(out, sizeof(out), "p50 %.2f ms  p99 %.2f ms  p999 %.2f ms", at(0.5), at(0.99), at(0.999));
    return out;
  }
};

struct Counts {
  std::atomic<std::uint64_t> events{0}, orders{0}, refunds{0}, refused{0};
};

// One writer: it alone handles orders first, first + step, ... so it keeps each one's state in
// memory (the LMAX way) and appends at the version it knows; the same checks as the commands.
void write_orders(Engine& engine, std::uint64_t first, std::uint64_t last, std::uint64_t step, Counts& counts,
                  Latencies& durable, Latencies* visible) {
  annal::engine::Receipt receipt;
  std::uint64_t appends = 0;
  const auto append = [&](std::uint64_t id, orders::Order& order, std::uint64_t& version, auto&& decide) {
    auto event = decide(order);
    if (!event.ok()) {
      counts.refused.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    const annal::engine::EventData data{.type = event.value().type, .payload = event.value().payload};
    const auto began = Clock::now();
    auto appended = engine.append(orders::stream_of(id),
                                  version == 0 ? ExpectedVersion::no_stream() : ExpectedVersion::exactly(version - 1),
                                  {&data, 1});
    if (!appended.ok()) {
      std::fprintf(stderr, "orders: %s\n", appended.status().to_string().c_str());
      return false;
    }
    receipt = appended.value();
    order.apply(data.type, orders::amount_of(data.payload));
    ++version;
    counts.events.fetch_add(1, std::memory_order_relaxed);
    engine.on_durable(receipt, [&durable, began](const annal::Status& status) {
      if (status.ok()) durable.add(ms_since(began));
    });
    ++appends;
    // Sampled: how long until the "orders" read model shows it (read-your-writes).
    if (visible != nullptr && appends % 256 == 0 &&
        engine.query("orders", receipt.last_sequence, [](const annal::engine::Projection&) {}, 30s).ok()) {
      visible->add(ms_since(began));
    }
    if (appends % 1024 == 0) (void)engine.wait_durable(receipt, Clock::now() + 60s);  // the disk sets the pace
    return true;
  };
  for (std::uint64_t id = first; id <= last; id += step) {
    orders::Order order;
    std::uint64_t version = 0;
    const std::int64_t amount = 1'000 + static_cast<std::int64_t>(id * 7'919 % 90'000);
    bool ok = append(id, order, version, [&](const orders::Order& o) { return orders::create_order(o, id, amount); }) &&
              append(id, order, version, [&](const orders::Order& o) { return orders::pay_order(o, id, amount); });
    if (ok && id % 4 == 0) {
      ok = append(id, order, version, [&](const orders::Order& o) { return orders::create_refund(o, id, amount / 3); });
      counts.refunds.fetch_add(1, std::memory_order_relaxed);
    }
    // Now and then a customer asks for more back than they paid: refused, nothing appended.
    if (ok && id % 50 == 0) ok = append(id, order, version, [&](const orders::Order& o) { return orders::create_refund(o, id, amount); });
    if (!ok) return;
    counts.orders.fetch_add(1, std::memory_order_relaxed);
  }
  if (receipt.last_sequence != 0) (void)engine.wait_durable(receipt, Clock::now() + 60s);
}

int run(const std::string& directory, std::uint64_t orders_count, unsigned writers, bool keep_going) {
  auto opened = open_store(directory);
  if (!opened.ok()) return fail(opened.status());
  Engine& engine = *opened.value();
  Counts counts;
  Latencies durable, visible;
  std::atomic<bool> done{false};
  const auto start = Clock::now();
  std::thread reporter([&] {  // live progress, once a second
    while (!done.load()) {
      std::this_thread::sleep_for(1s);
      const auto status = engine.projection_status("orders");
      std::printf("  %10llu events  %8.0f events/s  durable %llu  orders view at %llu\n",
                  static_cast<unsigned long long>(counts.events.load()), static_cast<double>(counts.events.load()) / (ms_since(start) / 1000),
                  static_cast<unsigned long long>(engine.durable_sequence()),
                  static_cast<unsigned long long>(status.ok() ? status.value().applied : 0));
      std::fflush(stdout);
    }
  });
  const std::uint64_t first_id = engine.find_stream(orders::stream_of(1)) ? orders_count + 1 : 1;  // a second run adds more
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      write_orders(engine, first_id + w, first_id + orders_count - 1, writers, counts, durable, w == 0 ? &visible : nullptr);
    });
  }
  for (auto& thread : threads) thread.join();
  const double seconds = ms_since(start) / 1000;
  done = true;
  reporter.join();
  const auto totals = annal::engine::query<orders::Revenue>(engine, "revenue", engine.last_sequence(),
                                                            [](const orders::Revenue& r) { return r.totals(); }, 60s);
  if (!totals.ok()) return fail(totals.status());
  std::printf("\n  events      %llu: %llu orders created and paid, %llu refunds, %llu refunds refused (nothing appended)\n",
              static_cast<unsigned long long>(counts.events.load()), static_cast<unsigned long long>(counts.orders.load()),
              static_cast<unsigned long long>(counts.refunds.load()), static_cast<unsigned long long>(counts.refused.load()));
  std::printf("  throughput  %.0f events/s over %.1f s (%u writers, group commit, blocking waits)\n",
              static_cast<double>(counts.events.load()) / seconds, seconds, writers);
  std::printf("  durable     %s  (append -> on_durable)\n", durable.percentiles().c_str());
  std::printf("  visible     %s  (append -> \"orders\" view answers; 1 in 256)\n", visible.percentiles().c_str());
  std::printf("  revenue     %llu orders, ordered %s, paid %s, refunded %s\n",
              static_cast<unsigned long long>(totals.value().orders), money(totals.value().ordered).c_str(),
              money(totals.value().paid).c_str(), money(totals.value().refunded).c_str());
  std::fflush(stdout);
  if (keep_going) {
    std::printf("ready: appending until killed\n");
    std::fflush(stdout);
    for (std::uint64_t id = first_id + orders_count;; id += 1'000'000) {
      write_orders(engine, id, id + 999'999, 1, counts, durable, nullptr);
    }
  }
  if (annal::Status closed = engine.close(); !closed.ok()) return fail(closed);
  return 0;
}

int recover(const std::string& directory) {
  const auto start = Clock::now();
  auto opened = open_store(directory);
  if (!opened.ok()) return fail(opened.status());
  Engine& engine = *opened.value();
  const double open_ms = ms_since(start);
  for (const char* name : {"orders", "revenue"}) {
    if (annal::Status caught_up = engine.query(name, engine.last_sequence(), [](const annal::engine::Projection&) {}, 120s);
        !caught_up.ok()) {
      return fail(caught_up);
    }
  }
  const double total_ms = ms_since(start);
  const auto& report = engine.open_report();
  std::printf("  recovered   %llu records in %.0f ms: open %.0f ms (engine state snapshot at %llu, %llu records replayed)\n",
              static_cast<unsigned long long>(engine.last_sequence()), total_ms, open_ms,
              static_cast<unsigned long long>(report.state_snapshot), static_cast<unsigned long long>(report.records_replayed));
  for (const char* name : {"orders", "revenue"}) {
    const auto status = engine.projection_status(name).value();
    std::printf("  %-10s  from its snapshot at %llu, %llu events replayed\n", name,
                static_cast<unsigned long long>(status.restored_from), static_cast<unsigned long long>(status.replayed));
  }
  return engine.close().ok() ? 0 : 1;
}

int query(const std::string& directory, std::uint64_t id) {
  auto opened = open_store(directory);
  if (!opened.ok()) return fail(opened.status());
  Engine& engine = *opened.value();
  const auto row = annal::engine::query<orders::OrdersView>(engine, "orders", engine.last_sequence(), [&](const orders::OrdersView& view) {
    const auto* found = view.find(id);
    return found != nullptr ? std::optional<orders::OrdersView::Row>(*found) : std::nullopt;
  }, 120s);
  if (!row.ok()) return fail(row.status());
  if (!row.value()) {
    std::printf("order %llu: none\n", static_cast<unsigned long long>(id));
    return 1;
  }
  std::printf("order %llu: %s, amount %s, paid %s, refunded %s\nhistory:\n", static_cast<unsigned long long>(id),
              orders::to_string(row.value()->status), money(row.value()->amount).c_str(), money(row.value()->paid).c_str(),
              money(row.value()->refunded).c_str());
  const auto history = engine.read_stream(orders::stream_of(id), {});
  if (!history.ok()) return fail(history.status());
  for (const auto& event : history.value()) {
    const std::string_view json(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
    std::printf("  v%llu  seq %llu  %-14s %.*s\n", static_cast<unsigned long long>(event.header.version),
                static_cast<unsigned long long>(event.header.sequence), std::string(event.header.type).c_str(),
                static_cast<int>(json.size()), json.data());
  }
  const auto totals = annal::engine::query<orders::Revenue>(engine, "revenue", engine.last_sequence(),
                                                            [](const orders::Revenue& r) { return r.totals(); }, 120s);
  if (totals.ok()) {
    std::printf("revenue: %llu orders, paid %s, refunded %s\n", static_cast<unsigned long long>(totals.value().orders),
                money(totals.value().paid).c_str(), money(totals.value().refunded).c_str());
  }
  return engine.close().ok() ? 0 : 1;
}

int command(const std::string& verb, const std::string& directory, std::uint64_t id, std::int64_t amount) {
  auto opened = open_store(directory);
  if (!opened.ok()) return fail(opened.status());
  const auto receipt = orders::run_command(*opened.value(), id, [&](const orders::Order& order) {
    if (verb == "create") return orders::create_order(order, id, amount);
    if (verb == "pay") return orders::pay_order(order, id, amount);
    return orders::create_refund(order, id, amount);
  });
  if (!receipt.ok()) return fail(receipt.status());
  std::printf("%s: order %llu version %llu at sequence %llu, durable\n", verb.c_str(), static_cast<unsigned long long>(id),
              static_cast<unsigned long long>(receipt.value().last_version),
              static_cast<unsigned long long>(receipt.value().last_sequence));
  return opened.value()->close().ok() ? 0 : 1;
}

// The seeds' HTTP service until SIGINT or SIGTERM, then a clean close. `flags` are pairs.
int serve(const std::string& directory, const std::vector<std::string>& flags) {
  annal::server::ServerOptions options;
  std::shared_ptr<orders::OrdersTable> table;
  (void)annal::server::parse_listen("127.0.0.1:2113", options);
  for (std::size_t i = 0; i + 1 < flags.size(); i += 2) {
    const std::string& value = flags[i + 1];
    if (flags[i] == "--listen") {
      if (annal::Status listen = annal::server::parse_listen(value, options); !listen.ok()) return fail(listen);
    } else if (flags[i] == "--keys") {
      options.keys_file = value;
    } else if (flags[i] == "--tls-cert") {
      options.tls_certificate_file = value;
    } else if (flags[i] == "--tls-key") {
      options.tls_key_file = value;
    } else if (flags[i] == "--postgres") {
      table = std::make_shared<orders::OrdersTable>(orders::orders_table(value));
    } else {
      std::fputs(kUsage, stderr);
      return 2;
    }
  }
  if (flags.size() % 2 != 0) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  annal::server::block_serve_signals();
  auto opened = open_store(directory);
  if (!opened.ok()) return fail(opened.status());
  options.projections = {"orders", "revenue"};
  if (table) {
    const annal::Status added = opened.value()->add_projection(orders::OrdersTable::kName, table->projection, {});
    if (!added.ok()) return fail(added);
    options.projections.push_back(orders::OrdersTable::kName);
  }
  options.routes = orders::http_routes(*opened.value(), table);
  const annal::Status served = annal::server::serve_until_stopped("orders serve", directory, *opened.value(), options);
  const annal::Status closed = opened.value()->close();
  if (!served.ok()) return fail(served);
  return closed.ok() ? 0 : fail(closed);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string& verb = args[0];
  const std::string& directory = args[1];
  try {
    if (verb == "run") {
      std::uint64_t orders_count = 400'000;
      unsigned writers = 4;
      bool keep_going = false;
      for (std::size_t i = 2; i < args.size(); ++i) {
        if (args[i] == "--orders" && i + 1 < args.size()) {
          orders_count = std::stoull(args[++i]);
        } else if (args[i] == "--writers" && i + 1 < args.size()) {
          writers = static_cast<unsigned>(std::stoul(args[++i]));
        } else if (args[i] == "--keep-going") {
          keep_going = true;
        } else {
          std::fputs(kUsage, stderr);
          return 2;
        }
      }
      return run(directory, orders_count, std::max(1u, writers), keep_going);
    }
    if (verb == "recover" && args.size() == 2) return recover(directory);
    if (verb == "serve") return serve(directory, {args.begin() + 2, args.end()});
    if (verb == "query" && args.size() == 3) return query(directory, std::stoull(args[2]));
    if ((verb == "create" || verb == "pay" || verb == "refund") && args.size() == 4) {
      return command(verb, directory, std::stoull(args[2]), std::stoll(args[3]));
    }
  } catch (const std::logic_error&) {  // a number that is not one
  }
  std::fputs(kUsage, stderr);
  return 2;
}
