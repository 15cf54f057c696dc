// orders serve, driven as the seed documents drive it: their four requests with curl (a client
// that is not ours), over HTTP and HTTPS, then the store opened to see exactly what it holds.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "annal/engine/engine.h"
#include "postgres_cluster.h"
#include "run_program.h"
#include "sql_session.h"
#include "stalling_proxy.h"
#include "served.h"
#include "temp_directory.h"
#include "watchdog.h"

namespace orders {
namespace {

struct Answer {
  int status = 0;
  std::string headers;
  std::string body;
};

class OrdersHttpTest : public ::testing::Test {
 protected:
  // curl METHOD URL [JSON body], through the shell (bodies here hold no single quote).
  Answer ask(const std::string& method, const std::string& url, const std::string& body = "") {
    const std::string headers = scratch_.path() + "/headers";
    std::string command = "curl -sS -X " + method + " -D " + headers + " -w '\\n%{http_code}' " + curl_options_;
    if (!body.empty()) command += " -H 'Content-Type: application/json' --data-binary '" + body + "'";
    const annal::test::ProgramRun ran = annal::test::run_program(command + " '" + url + "'");
    EXPECT_EQ(ran.exit_code, 0) << ran.output;
    Answer answer;
    const std::size_t last = ran.output.rfind('\n');
    answer.body = ran.output.substr(0, last);
    answer.status = last == std::string::npos ? 0 : std::stoi(ran.output.substr(last + 1));
    std::ifstream in(headers);
    std::stringstream text;
    text << in.rdbuf();
    answer.headers = text.str();
    return answer;
  }

  // Creates order `id` (amount 100) and reads it back once applied.
  void created_and_read(const annal::test::Served& served, const std::string& id) {
    const Answer created = ask("POST", served.url("/orders"), R"({"orderId": ")" + id + R"(", "amount": 100})");
    ASSERT_EQ(created.status, 201) << created.body;
    const Answer read = ask("GET", served.url("/orders?orderId=" + id + "&min_sequence=" + field(created, "sequence")));
    EXPECT_EQ(read.status, 200) << read.body;
  }

  // Field `key` of a JSON answer, as text ("" if absent).
  std::string field(const Answer& answer, const char* key) {
    simdjson::dom::element json;
    if (parser_.parse(answer.body).get(json) != simdjson::SUCCESS) return "";
    simdjson::dom::element value;
    if (json[key].get(value) != simdjson::SUCCESS) return "";
    std::string_view text;
    if (value.get(text) == simdjson::SUCCESS) return std::string(text);
    return simdjson::minify(value);
  }

  // The seeds' section 5 session against `base` for order `id`: create, pay, refund, query; each
  // answer as the seeds show it, and the rules over HTTP.
  void seeds_session(const std::string& base, const std::string& id) {
    const Answer created = ask("POST", base + "/orders", R"({"orderId": ")" + id + R"(", "amount": 100})");
    ASSERT_EQ(created.status, 201) << created.body;
    EXPECT_EQ(field(created, "orderId"), id);
    EXPECT_EQ(field(created, "eventType"), "OrderCreated");
    EXPECT_GT(std::stoull(field(created, "timestamp")), 1'600'000'000u);  // unix seconds, as the seeds'
    EXPECT_NE(created.headers.find("Annal-Sequence: " + field(created, "sequence")), std::string::npos) << created.headers;
    const Answer paid = ask("POST", base + "/orders", R"({"orderId": ")" + id + R"(", "status": "Paid"})");
    ASSERT_EQ(paid.status, 201) << paid.body;
    EXPECT_EQ(field(paid, "eventType"), "OrderPaid");
    EXPECT_EQ(field(paid, "amount"), "100");  // what was left to pay
    const Answer refunded = ask("POST", base + "/refunds", R"({"orderId": ")" + id + R"(", "amount": 50})");
    ASSERT_EQ(refunded.status, 201) << refunded.body;
    EXPECT_EQ(field(refunded, "eventType"), "RefundCreated");

    // The rules hold over HTTP, and a refused command appends nothing.
    EXPECT_EQ(ask("POST", base + "/orders", R"({"orderId": ")" + id + R"(", "amount": 5})").status, 409);
    EXPECT_EQ(ask("POST", base + "/refunds", R"({"orderId": ")" + id + R"(", "amount": 51})").status, 422);
    EXPECT_EQ(ask("POST", base + "/orders", R"({"orderId": "1", "status": "Paid"})").status, 404);
    EXPECT_EQ(ask("POST", base + "/orders", R"({"orderId": "12x", "amount": 5})").status, 400);
    EXPECT_EQ(ask("POST", base + "/orders", R"({"orderId": ")" + id + R"("})").status, 400);  // no amount
    EXPECT_EQ(ask("GET", base + "/orders?orderId=1").status, 404);

    // Read your writes: the read model has applied the refund once it answers.
    const Answer order = ask("GET", base + "/orders?orderId=" + id + "&min_sequence=" + field(refunded, "sequence"));
    ASSERT_EQ(order.status, 200) << order.body;
    EXPECT_EQ(field(order, "status"), "refunded");
    EXPECT_EQ(field(order, "paid"), "100");
    EXPECT_EQ(field(order, "refunded"), "50");
    const std::string events = field(order, "events");
    const std::size_t created_at = events.find("\"OrderCreated\"");
    const std::size_t paid_at = events.find("\"OrderPaid\"");
    const std::size_t refund_at = events.find("\"RefundCreated\"");
    EXPECT_TRUE(created_at < paid_at && paid_at < refund_at && refund_at != std::string::npos) << events;
    EXPECT_NE(events.find("\"sequence\":" + field(created, "sequence")), std::string::npos) << events;
    // A sequence no write has had yet could only time out: refused at once.
    const std::string later = std::to_string(std::stoull(field(refunded, "sequence")) + 1000);
    EXPECT_EQ(ask("GET", base + "/orders?orderId=" + id + "&min_sequence=" + later).status, 400);
  }

  // The order's stream as stored: types and payloads, byte for byte.
  void expect_stored(const std::string& id) {
    auto store = annal::engine::Engine::open(dir_.path(), {});
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    EXPECT_EQ(store.value()->open_report().records_replayed, 0u);  // closed cleanly
    const auto events = store.value()->read_stream("order-" + id, {});
    ASSERT_TRUE(events.ok());
    std::vector<std::string> stored;
    for (const annal::engine::Event& event : events.value()) {
      stored.push_back(std::string(event.header.type) + " " +
                       std::string(reinterpret_cast<const char*>(event.payload.data()), event.payload.size()));
    }
    EXPECT_EQ(stored, (std::vector<std::string>{"OrderCreated {\"order\":\"" + id + "\",\"amount\":100}",
                                                "OrderPaid {\"order\":\"" + id + "\",\"amount\":100}",
                                                "RefundCreated {\"order\":\"" + id + "\",\"amount\":50}"}));
  }

  annal::test::TempDirectory dir_;
  annal::test::TempDirectory scratch_;
  std::string curl_options_;
  simdjson::dom::parser parser_;
};

TEST_F(OrdersHttpTest, TheSeedDocumentsRequestsWorkOverHttpAndHttps) {
  annal::test::Watchdog watchdog("orders serve and curl");
  {
    annal::test::Served served(ANNAL_EXAMPLE_PROGRAM, dir_.path());
    ASSERT_FALSE(HasFailure());
    seeds_session(served.url(""), "123456");
    // The read models' status, for the operator (admin; no keys here).
    const Answer projections = ask("GET", served.url("/projections"));
    ASSERT_EQ(projections.status, 200) << projections.body;
    EXPECT_NE(projections.body.find(R"("name":"orders")"), std::string::npos) << projections.body;
    EXPECT_NE(projections.body.find(R"("name":"revenue")"), std::string::npos) << projections.body;
    const Answer one = ask("GET", served.url("/projections/orders"));
    EXPECT_EQ(one.status, 200);
    EXPECT_EQ(field(one, "error"), "null");
    EXPECT_GE(std::stoull(field(one, "applied")), 3u);
    EXPECT_EQ(ask("GET", served.url("/projections/nothing")).status, 404);
    const Answer metrics = ask("GET", served.url("/metrics"));
    EXPECT_EQ(metrics.status, 200);
    EXPECT_NE(metrics.body.find(R"(annal_projection_applied_sequence{projection="orders"})"), std::string::npos);
    EXPECT_NE(metrics.body.find(R"(annal_http_requests_total{route="application",status="201"} 3)"), std::string::npos)
        << metrics.body.substr(0, 2000);
    EXPECT_EQ(served.stop(), 0);
  }
  expect_stored("123456");

  const std::string certificate = scratch_.path() + "/cert.pem";
  const std::string key = scratch_.path() + "/key.pem";
  const auto made = annal::test::run_program("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " +
                                             key + " -out " + certificate +
                                             " -days 2 -subj /CN=annal-test -addext subjectAltName=IP:127.0.0.1");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  {
    annal::test::Served served(ANNAL_EXAMPLE_PROGRAM, dir_.path(), {"--tls-cert", certificate, "--tls-key", key});
    ASSERT_FALSE(HasFailure());
    curl_options_ = "--cacert " + certificate;
    seeds_session("https://127.0.0.1:" + std::to_string(served.port()), "654321");
    EXPECT_EQ(served.stop(), 0);
  }
  expect_stored("654321");
  expect_stored("123456");
}

// With --postgres the orders read model is kept in a PostgreSQL table too, and GET /orders answers
// from it, once it holds the write asked for: the seeds' session passes as before, and the table
// agrees with the answers.
TEST_F(OrdersHttpTest, WithPostgresTheOrderIsAnsweredFromItsTableWhichAgrees) {
  annal::test::Watchdog watchdog("orders serve --postgres");
  annal::test::PostgresCluster cluster(ANNAL_POSTGRES_BINDIR);
  {
    annal::test::Served served(ANNAL_EXAMPLE_PROGRAM, dir_.path(), {"--postgres", cluster.conninfo()});
    ASSERT_FALSE(HasFailure());
    seeds_session(served.url(""), "777");
    const Answer order = ask("GET", served.url("/orders?orderId=777"));
    ASSERT_EQ(order.status, 200) << order.body;
    const auto row = annal::test::SqlSession(cluster.conninfo())
                         .rows("SELECT status, amount, paid, refunded FROM orders WHERE order_id = 777");
    ASSERT_EQ(row.size(), 1u);
    EXPECT_EQ(row[0][0], field(order, "status"));
    EXPECT_EQ(row[0][1], field(order, "amount"));
    EXPECT_EQ(row[0][2], field(order, "paid"));
    EXPECT_EQ(row[0][3], field(order, "refunded"));
    EXPECT_NE(ask("GET", served.url("/projections/orders_pg")).body.find(R"("retrying":null)"), std::string::npos);
    EXPECT_EQ(served.stop(), 0);
  }
  expect_stored("777");
}

// The generic API can append anything on any stream: events that no command would write (a stream
// that is not an order's, an OrderPaid before its OrderCreated, a second OrderCreated, amounts that
// overflow a sum) change the table as they change the in-memory read model, and stop neither.
TEST_F(OrdersHttpTest, WithPostgresEventsNoCommandWouldWriteStopNeitherReadModel) {
  annal::test::Watchdog watchdog("orders serve --postgres, hostile events");
  annal::test::PostgresCluster cluster(ANNAL_POSTGRES_BINDIR);
  annal::test::Served served(ANNAL_EXAMPLE_PROGRAM, dir_.path(), {"--postgres", cluster.conninfo()});
  ASSERT_FALSE(HasFailure());
  const std::string max = "9223372036854775807";
  const auto append = [&](const std::string& stream, const std::string& type, const std::string& amount) {
    const Answer appended = ask("POST", served.url("/streams/" + stream),
                                R"({"type": ")" + type + R"(", "data": {"amount": )" + amount + "}}");
    EXPECT_EQ(appended.status, 201) << stream << " " << appended.body;
    return field(appended, "last_sequence");
  };
  for (const std::string stream : {"order-", "order-abc", "order-007", "order-99999999999999999999", "order--1"}) {
    append(stream, "OrderCreated", "10");
  }
  append("order-5", "OrderCreated", "10");
  append("order-5", "OrderCreated", "20");
  append("order-6", "OrderPaid", "30");
  append("order-8", "OrderCreated", max);
  append("order-8", "OrderPaid", max);
  append("order-8", "OrderPaid", max);
  append("order-8", "RefundCreated", max);
  append("order-8", "RefundCreated", max);
  const std::string last = append("order-9", "OrderCreated", "-5");
  const auto expect_orders = [&](const annal::test::Served& server) {
    const auto expect_order = [&](const std::string& id, const std::string& status, const std::string& amount,
                                  const std::string& paid, const std::string& refunded) {
      const Answer order = ask("GET", server.url("/orders?orderId=" + id + "&min_sequence=" + last));
      ASSERT_EQ(order.status, 200) << id << " " << order.body;
      EXPECT_EQ(field(order, "status"), status) << id;
      EXPECT_EQ(field(order, "amount"), amount) << id;
      EXPECT_EQ(field(order, "paid"), paid) << id;
      EXPECT_EQ(field(order, "refunded"), refunded) << id;
    };
    expect_order("5", "created", "20", "0", "0");
    expect_order("6", "paid", "0", "30", "0");
    expect_order("8", "refunded", max, max, max);
    expect_order("9", "created", "0", "0", "0");
    EXPECT_EQ(ask("GET", server.url("/orders?orderId=7")).status, 404);  // order-007 is not order 7's stream
    for (const std::string name : {"orders", "orders_pg", "revenue"}) {
      const Answer projection = ask("GET", server.url("/projections/" + name));
      if (projection.status == 404) continue;  // orders_pg without --postgres
      EXPECT_NE(projection.body.find(R"("error":null)"), std::string::npos) << projection.body;
    }
  };
  expect_orders(served);  // from the table
  seeds_session(served.url(""), "777");  // nothing stopped
  EXPECT_EQ(served.stop(), 0);
  // The in-memory read model, rebuilt from the journal, answers the same.
  annal::test::Served in_memory(ANNAL_EXAMPLE_PROGRAM, dir_.path(), {});
  ASSERT_FALSE(HasFailure());
  expect_orders(in_memory);
  EXPECT_EQ(in_memory.stop(), 0);
}

// A statement PostgreSQL refuses (here a constraint the table gained behind the example's back)
// stops the table's projection: a read that needs what it will never hold is answered 503 at once,
// naming the event, while reads it can answer and the in-memory read model go on.
TEST_F(OrdersHttpTest, WithPostgresAReadTheStoppedTableCannotAnswerIs503AtOnce) {
  annal::test::Watchdog watchdog("orders serve --postgres, a refused statement");
  annal::test::PostgresCluster cluster(ANNAL_POSTGRES_BINDIR);
  annal::test::Served served(ANNAL_EXAMPLE_PROGRAM, dir_.path(), {"--postgres", cluster.conninfo()});
  ASSERT_FALSE(HasFailure());
  created_and_read(served, "1");
  annal::test::SqlSession(cluster.conninfo()).run("ALTER TABLE orders ADD CONSTRAINT small CHECK (amount < 1000)");

  const Answer large = ask("POST", served.url("/orders"), R"({"orderId": "2", "amount": 5000})");
  ASSERT_EQ(large.status, 201) << large.body;  // the journal takes it
  // Once the projection has stopped, a read waiting for it is answered 503, not 504 at the timeout.
  for (;;) {  // the watchdog bounds it
    const Answer projection = ask("GET", served.url("/projections/orders_pg"));
    if (projection.body.find(R"("error":null)") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const Answer read = ask("GET", served.url("/orders?orderId=2&min_sequence=" + field(large, "sequence")));
  EXPECT_EQ(read.status, 503) << read.body;
  EXPECT_EQ(field(read, "error"), "projection_stopped") << read.body;
  EXPECT_NE(read.body.find("event " + field(large, "sequence") + " (OrderCreated)"), std::string::npos) << read.body;
  EXPECT_EQ(ask("GET", served.url("/orders?orderId=1")).status, 200);  // what the table holds, it answers
  EXPECT_NE(ask("GET", served.url("/projections/orders")).body.find(R"("error":null)"), std::string::npos);
  EXPECT_EQ(served.stop(), 0);
}

// A read of the table is bounded by the request's deadline (10 s, the server's query timeout):
// a lock held on the table (a migration, say) does not hold the answer, nor a query thread.
TEST_F(OrdersHttpTest, WithPostgresAReadBlockedByALockIsAnsweredAtTheDeadline) {
  annal::test::Watchdog watchdog("orders serve --postgres, a locked table");
  annal::test::PostgresCluster cluster(ANNAL_POSTGRES_BINDIR);
  annal::test::Served served(ANNAL_EXAMPLE_PROGRAM, dir_.path(), {"--postgres", cluster.conninfo()});
  ASSERT_FALSE(HasFailure());
  created_and_read(served, "1");
  auto migration = std::make_unique<annal::test::SqlSession>(cluster.conninfo());
  migration->run("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE");
  curl_options_ = "--max-time 60";  // without a deadline the answer would wait for the lock
  const Answer read = ask("GET", served.url("/orders?orderId=1"));
  EXPECT_EQ(read.status, 504) << read.body;
  EXPECT_EQ(field(read, "error"), "timed_out") << read.body;
  migration.reset();  // the lock with it
  EXPECT_EQ(ask("GET", served.url("/orders?orderId=1")).status, 200);
  EXPECT_EQ(served.stop(), 0);
}

// A PostgreSQL that stops answering (a stuck backend, a partition: no error ever comes) while a
// read is in flight: the read is answered at the request's deadline, and the server still stops.
TEST_F(OrdersHttpTest, WithPostgresASilentServerHoldsNeitherAReadNorTheShutdown) {
  annal::test::Watchdog watchdog("orders serve --postgres, a silent server");
  annal::test::PostgresCluster cluster(ANNAL_POSTGRES_BINDIR);
  annal::test::StallingProxy proxy(cluster.socket_path());
  annal::test::Served served(ANNAL_EXAMPLE_PROGRAM, dir_.path(),
                             {"--postgres", "host=127.0.0.1 port=" + std::to_string(proxy.port()) + " dbname=postgres user=annal"});
  ASSERT_FALSE(HasFailure());
  created_and_read(served, "1");
  proxy.stall_on("SELECT status");  // the read's query reaches the proxy, and no answer comes
  curl_options_ = "--max-time 60";  // without a deadline of its own the read would wait for ever
  const Answer read = ask("GET", served.url("/orders?orderId=1"));
  EXPECT_EQ(read.status, 504) << read.body;
  EXPECT_EQ(field(read, "error"), "timed_out") << read.body;
  EXPECT_EQ(served.stop(), 0);
}

}  // namespace
}  // namespace orders
