// The Kafka export and import against librdkafka's mock cluster (a Kafka protocol server on
// loopback, in this process, three brokers), with kcat, a Kafka client that is not ours, reading
// the topic back or writing the messages: every event once, each stream in order, across
// restarts, kills and broker failures.
#include "annal/kafka/kafka_export.h"
#include "annal/kafka/kafka_import.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "annal/journal/crc32c.h"
#include "directory_backup.h"
#include "kafka_fixture.h"
#include "master_keys.h"
#include "spawned_tool.h"

namespace annal::kafka {
namespace {

TEST_F(KafkaTest, EveryEventOnceInStreamOrderAcrossRestarts) {
  annal::test::Watchdog watchdog("kafka export across restarts");
  auto exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  wait_delivered(*exporter, append(600));
  ASSERT_TRUE(engine_->close().ok());
  exporter.reset();
  // Reopened: it reads where the topic stands and produces nothing twice.
  exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  const Receipt last = append(400);
  wait_delivered(*exporter, last);
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// The brokers go down with records queued and some in flight, and the engine closes: the next run
// finds in the topic which made it and produces the rest, once.
TEST_F(KafkaTest, ClosingWithRecordsUndeliveredLosesAndDoublesNothing) {
  annal::test::Watchdog watchdog("kafka export closed while brokers are down");
  auto exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  wait_delivered(*exporter, append(300));
  for (int broker = 1; broker <= kBrokers; ++broker) rd_kafka_mock_broker_set_down(cluster_, broker);
  const Receipt during = append(300);
  ASSERT_TRUE(engine_->wait_durable(during, Engine::Clock::now() + std::chrono::minutes(2)).ok());
  // Appends go on; the export says why it waits.
  EXPECT_TRUE(annal::test::eventually([&] { return !exporter->health().ok(); }));
  EXPECT_TRUE(engine_->projection_status("export_kafka").value().error.ok());
  ASSERT_TRUE(engine_->close().ok());
  exporter.reset();
  for (int broker = 1; broker <= kBrokers; ++broker) rd_kafka_mock_broker_set_up(cluster_, broker);
  exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  const Receipt last = append(100);
  wait_delivered(*exporter, last);
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// The engine closes while Kafka refuses every produce request (retriable), with 300 records
// queued in the producer, and the application still holds its KafkaExport (for its health(), its
// delivered()). The store is opened again (the close released its lock) with a new exporter of
// the same source, which reads the topic back, finds those events missing and produces them. The
// closed exporter must send nothing more: its producer used to live on with the object and send
// what it held once Kafka took requests again, so that each event landed twice.
TEST_F(KafkaTest, RecordsQueuedAtCloseAreNotSentAfterTheCloseByAnExporterStillHeld) {
  annal::test::Watchdog watchdog("kafka export, records queued at close");
  auto first = open_with_export();
  ASSERT_FALSE(HasFailure());
  wait_delivered(*first, append(100));
  constexpr std::int16_t kProduce = 0;  // the Produce request's API key
  // Far more refusals than the close and the next start take: cleared below.
  const std::vector<rd_kafka_resp_err_t> refusals(200'000, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
  rd_kafka_mock_push_request_errors_array(cluster_, kProduce, refusals.size(), refusals.data());
  const Receipt queued = append(300);
  ASSERT_TRUE(engine_->wait_durable(queued, Engine::Clock::now() + std::chrono::minutes(2)).ok());
  ASSERT_TRUE(annal::test::eventually(
      [&] { return engine_->projection_status("export_kafka").value().applied >= queued.last_sequence; }));
  ASSERT_TRUE(engine_->close().ok());
  // `first` is still held: the store opened again, with a new exporter of the same source.
  auto second = open_with_export();
  ASSERT_FALSE(HasFailure());
  rd_kafka_mock_clear_request_errors(cluster_, kProduce);
  const Receipt last = append(10);
  wait_delivered(*second, last);
  // Sent after its close, the closed exporter's records would be acknowledged within a retry or
  // two (100 ms apart). This test's one wait on something that must not happen: 5 s, some fifty
  // retries, then the exporter goes (what it held is dropped, as the next run produced it).
  const bool landed =
      annal::test::eventually([&] { return first->delivered() >= queued.last_sequence; }, std::chrono::seconds(5));
  EXPECT_FALSE(landed) << "the closed exporter's records were sent after its close (delivered " << first->delivered()
                       << " of " << queued.last_sequence << ")";
  first.reset();
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// An exporter held after its engine closed with records queued (Kafka down), added again to the
// store opened again while Kafka is still down: the start fails at its timeout, saying so. Kafka
// refused nothing, so failure() (the fatal error, "ok while none") has nothing to say; the last
// run's producer, destroyed by the start, purges the records it held, and librdkafka reports each
// purged record as not delivered, which the exporter must not take for a refusal.
TEST_F(KafkaTest, AStartThatFailsDoesNotReportTheLastRunsPurgedRecordsAsRefused) {
  annal::test::Watchdog watchdog("kafka export, a failed start after a close with records queued");
  auto opened = Engine::open(dir_.path(), {});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  KafkaExportOptions quick = options();
  quick.start_timeout = std::chrono::seconds(2);
  auto exporter = std::make_shared<KafkaExport>(quick);
  ASSERT_TRUE(engine_->add_projection("export_kafka", exporter, {}).ok());
  wait_delivered(*exporter, append(10));
  for (int broker = 1; broker <= kBrokers; ++broker) rd_kafka_mock_broker_set_down(cluster_, broker);
  const Receipt queued = append(50);
  ASSERT_TRUE(engine_->wait_durable(queued, Engine::Clock::now() + std::chrono::minutes(1)).ok());
  ASSERT_TRUE(annal::test::eventually(
      [&] { return engine_->projection_status("export_kafka").value().applied >= queued.last_sequence; }));
  ASSERT_TRUE(engine_->close().ok());
  EXPECT_TRUE(exporter->failure().ok()) << exporter->failure().to_string();
  engine_.reset();
  opened = Engine::open(dir_.path(), {});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  const Status added = engine_->add_projection("export_kafka", exporter, {});
  EXPECT_FALSE(added.ok());
  EXPECT_TRUE(exporter->failure().ok()) << "Kafka refused nothing, yet: " << exporter->failure().to_string()
                                        << " (the start failed with: " << added.to_string() << ")";
  ASSERT_TRUE(engine_->close().ok());
}

// A topic other stores write to as well: between two runs, another source writes 2,500 records
// into every partition, so that the read-back goes back past several chunks to find this source's
// last record. Nothing of this source is produced twice.
TEST_F(KafkaTest, AnotherSourcesRecordsInTheTopicAreReadPast) {
  annal::test::Watchdog watchdog("kafka export, a shared topic");
  auto exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  wait_delivered(*exporter, append(300));
  ASSERT_TRUE(engine_->close().ok());
  exporter.reset();
  std::string foreign;
  for (int i = 0; i < 2500; ++i) foreign += "{\"other\":" + std::to_string(i) + "}\n";
  for (int partition = 0; partition < kPartitions; ++partition) {
    ASSERT_NO_FATAL_FAILURE(send_with_kcat(foreign, "-t orders -p " + std::to_string(partition) +
                                                        " -k other -H annal.source=store-b -H annal.sequence=1" +
                                                        " -H annal.delivered=1 -H annal.partitions=4"));
  }
  exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  const Receipt last = append(300);
  wait_delivered(*exporter, last);
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// A producer queue of 50 records: the export waits for room as acknowledgements come, and still
// sends each event once, in order.
TEST_F(KafkaTest, AFullProducerQueueWaitsForRoom) {
  annal::test::Watchdog watchdog("kafka export, a full queue");
  auto exporter = open_with_export({{"queue.buffering.max.messages", "50"}});
  ASSERT_FALSE(HasFailure());
  const Receipt last = append(2000);
  wait_delivered(*exporter, last);
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// Failures while it runs: a leader moves, produce requests fail with retriable errors, a broker
// restarts. The producer retries; the topic still holds each event once, in order.
TEST_F(KafkaTest, BrokerFailuresMidExportAreRetriedWithoutGapsOrDuplicates) {
  annal::test::Watchdog watchdog("kafka export through broker failures");
  auto exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  append(200);
  rd_kafka_mock_partition_set_leader(cluster_, "orders", 0, 2);
  constexpr std::int16_t kProduce = 0;  // the Produce request's API key
  rd_kafka_mock_push_request_errors(cluster_, kProduce, 4, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                    RD_KAFKA_RESP_ERR__TRANSPORT);
  append(200);
  rd_kafka_mock_broker_set_down(cluster_, 1);
  append(200);
  rd_kafka_mock_broker_set_up(cluster_, 1);
  const Receipt last = append(200);
  wait_delivered(*exporter, last);
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// The annal tool: `annal export kafka ... --until-caught-up` exports a store and exits; run again
// after more appends, it adds only what is new.
TEST_F(KafkaTest, TheToolExportsAndResumes) {
  annal::test::Watchdog watchdog("annal export kafka");
  const std::string command = std::string(ANNAL_CLI) + " export kafka " + dir_.path() + " --brokers " +
                              rd_kafka_mock_cluster_bootstraps(cluster_) +
                              " --topic orders --source store-a --set log_level=0 --until-caught-up";
  for (const int count : {500, 100}) {
    auto opened = Engine::open(dir_.path(), {});
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    engine_ = std::move(opened).value();
    append(count);
    ASSERT_TRUE(engine_->close().ok());
    engine_.reset();
    const annal::test::ProgramRun exported = annal::test::run_program(command);
    EXPECT_EQ(exported.exit_code, 0) << exported.output;
    EXPECT_NE(exported.output.find("(0 behind)"), std::string::npos) << exported.output;
    // Its progress while it ran, in lines, the last once it had caught up.
    EXPECT_NE(exported.output.find(", caught up, "), std::string::npos) << exported.output;
    EXPECT_NE(exported.output.find("export kafka: acknowledged up to sequence "), std::string::npos) << exported.output;
  }
  auto opened = Engine::open(dir_.path(), {});
  ASSERT_TRUE(opened.ok());
  engine_ = std::move(opened).value();
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// `annal export kafka` SIGKILLed at random moments of its export (timed from the line it prints
// once it has read the topic back), more events appended between rounds: a last run to the end
// leaves each event in the topic once, each stream in order. ANNAL_KAFKA_KILLS rounds (6 in CI).
TEST_F(KafkaTest, TheToolKilledAtRandomMomentsExportsEachEventOnce) {
  annal::test::Watchdog watchdog("annal export kafka, killed", std::chrono::seconds(600));
  const char* rounds_text = std::getenv("ANNAL_KAFKA_KILLS");
  const int rounds = rounds_text != nullptr ? std::atoi(rounds_text) : 6;
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 random(seed);
  const std::vector<std::string> args{"export", "kafka", dir_.path(), "--brokers", rd_kafka_mock_cluster_bootstraps(cluster_),
                                      "--topic", "orders", "--source", "store-a", "--set", "log_level=0",
                                      "--until-caught-up"};
  // The mock cluster keeps about 5 MB a partition and drops its oldest records beyond that: the
  // rounds share 36,000 events (some 9,000 records of 150 B a partition), so that none is dropped.
  const int per_round = std::max(500, 36'000 / std::max(rounds, 1));
  int killed_while_exporting = 0;
  for (int round = 0; round < rounds; ++round) {
    auto opened = Engine::open(dir_.path(), {});
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    engine_ = std::move(opened).value();
    append(per_round);
    ASSERT_TRUE(engine_->close().ok());
    engine_.reset();
    annal::test::SpawnedTool child(ANNAL_CLI, args);
    // "export kafka: ... from sequence N": it has read the topic back and begins to produce.
    EXPECT_TRUE(child.wait_for("from sequence")) << child.printed();
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 40)(random)));
    if (child.kill_now()) ++killed_while_exporting;
  }
  const annal::test::ProgramRun last = annal::test::run_program(
      std::string(ANNAL_CLI) + " export kafka " + dir_.path() + " --brokers " + rd_kafka_mock_cluster_bootstraps(cluster_) +
      " --topic orders --source store-a --set log_level=0 --until-caught-up");
  EXPECT_EQ(last.exit_code, 0) << last.output;
  auto opened = Engine::open(dir_.path(), {});
  ASSERT_TRUE(opened.ok());
  engine_ = std::move(opened).value();
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
  std::printf("%d rounds, %d killed while exporting, %d events, each once in the topic\n", rounds, killed_while_exporting,
              appended_);
}

// The seeds' messages (no key, the type in eventType, the order in orderId), sent by kcat, import
// into the order streams; read again by a second group from the start, they append nothing.
TEST_F(KafkaTest, ImportTakesTheSeedsMessagesOnceEvenReadTwice) {
  annal::test::Watchdog watchdog("kafka import");
  // One partition: the messages have no key, and Kafka orders only within a partition.
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  std::string lines;
  for (int order = 1; order <= 40; ++order) {
    lines += R"({"eventType": "OrderCreated", "orderId": ")" + std::to_string(order) + R"(", "amount": 100, "timestamp": 1628379200})" "\n";
    lines += R"({"eventType": "OrderPaid", "orderId": ")" + std::to_string(order) + R"(", "amount": 100})" "\n";
  }
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(lines, "-t event-stream"));
  auto opened = Engine::open(dir_.path() + "/store", {});
  ASSERT_TRUE(opened.ok());
  engine_ = std::move(opened).value();
  for (const std::string group : {"first", "second"}) {
    KafkaImportOptions options{.brokers = rd_kafka_mock_cluster_bootstraps(cluster_),
                               .topic = "event-stream",
                               .group = group,
                               .settings = {{"log_level", "0"}},
                               .stream_field = "orderId",
                               .stream_prefix = "order-"};
    auto import = KafkaImport::start(*engine_, options);
    ASSERT_TRUE(import.ok()) << import.status().to_string();
    EXPECT_TRUE(annal::test::eventually([&] {
      const auto p = import.value()->progress();
      return p.imported + p.duplicates == 80 || !p.error.ok();
    }));
    const KafkaImport::Progress done = import.value()->progress();
    EXPECT_TRUE(import.value()->stop().ok());
    EXPECT_EQ(done.imported, group == "first" ? 80u : 0u) << group;
    EXPECT_EQ(done.duplicates, group == "first" ? 0u : 80u) << group;
  }
  for (int order = 1; order <= 40; ++order) {
    const auto events = engine_->read_stream("order-" + std::to_string(order), {});
    ASSERT_TRUE(events.ok());
    ASSERT_EQ(events.value().size(), 2u) << order;
    EXPECT_EQ(events.value()[0].header.type, "OrderCreated");
    EXPECT_EQ(events.value()[1].header.type, "OrderPaid");
  }
  ASSERT_TRUE(engine_->close().ok());
}

// The annal tool: `annal import kafka ... --until-caught-up` takes the seeds' messages into the
// order streams and exits; run again, it finds them read and appends nothing.
TEST_F(KafkaTest, TheToolImportsAndResumes) {
  annal::test::Watchdog watchdog("annal import kafka");
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  std::string lines;
  for (int order = 1; order <= 30; ++order) {
    lines += R"({"eventType": "OrderCreated", "orderId": ")" + std::to_string(order) + R"(", "amount": 100})" "\n";
  }
  lines += "not json\nnor this\n";  // offsets 30 and 31: skipped, and each named
  lines += R"({"eventType": 123, "orderId": "31"})" "\n";  // offset 32: a type is text, not a number
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(lines, "-t event-stream"));
  const std::string store = dir_.path() + "/store";
  const std::string command = std::string(ANNAL_CLI) + " import kafka " + store + " --brokers " +
                              rd_kafka_mock_cluster_bootstraps(cluster_) +
                              " --topic event-stream --group annal --stream-field orderId --stream-prefix order-" +
                              // The mock cluster lets the first run's member go only at its session's end.
                              " --set log_level=0 --set session.timeout.ms=6000 --skip-bad --until-caught-up";
  const annal::test::ProgramRun first = annal::test::run_program(command);
  EXPECT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("imported 30 events"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("3 skipped"), std::string::npos) << first.output;
  // Its progress while it runs, with the lag: none left once it has caught up.
  EXPECT_NE(first.output.find("import kafka: imported 30 (0 already in the store, 3 skipped), lag 0, caught up"),
            std::string::npos)
      << first.output;
  EXPECT_NE(first.output.find("offset 32: no header annal.type and no text field eventType"), std::string::npos)
      << first.output;
  for (const char* offset : {"offset 30: its value is not JSON", "offset 31: its value is not JSON"}) {
    EXPECT_NE(first.output.find(offset), std::string::npos) << first.output;
  }
  const annal::test::ProgramRun again = annal::test::run_program(command);
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("imported 0 events"), std::string::npos) << again.output;
  auto opened = Engine::open(store, {});
  ASSERT_TRUE(opened.ok());
  for (int order = 1; order <= 30; ++order) {
    EXPECT_EQ(opened.value()->stream_version("order-" + std::to_string(order)), std::optional<std::uint64_t>(0)) << order;
  }
  EXPECT_TRUE(opened.value()->close().ok());
}

// Bad messages (not JSON, no type) are named by topic, partition and offset: skipped and counted,
// or the import stops at the first with nothing of it appended.
TEST_F(KafkaTest, ImportNamesABadMessageAndSkipsItOrStops) {
  annal::test::Watchdog watchdog("kafka import, bad messages");
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(R"({"eventType": "OrderCreated", "orderId": "1"})" "\nnot json\n"
                                         R"({"orderId": "2"})" "\n" R"({"eventType": "OrderCreated", "orderId": "3"})" "\n",
                                         "-t event-stream"));
  auto opened = Engine::open(dir_.path() + "/store", {});
  ASSERT_TRUE(opened.ok());
  engine_ = std::move(opened).value();
  KafkaImportOptions options{.brokers = rd_kafka_mock_cluster_bootstraps(cluster_),
                             .topic = "event-stream",
                             .group = "stopping",
                             .settings = {{"log_level", "0"}},
                             .stream_field = "orderId",
                             .stream_prefix = "order-"};
  auto stopping = KafkaImport::start(*engine_, options);
  ASSERT_TRUE(stopping.ok());
  EXPECT_TRUE(annal::test::eventually([&] { return !stopping.value()->progress().error.ok(); }));
  const Status stopped = stopping.value()->stop();
  EXPECT_NE(stopped.message().find("partition 0 offset 1: its value is not JSON"), std::string::npos) << stopped.to_string();
  EXPECT_EQ(stopping.value()->progress().imported, 1u);
  options.group = "skipping";
  options.on_bad = KafkaImportOptions::OnBad::skip;
  std::mutex named_mutex;
  std::vector<std::string> named;
  options.on_skipped = [&](const Status& skipped) {
    std::lock_guard lock(named_mutex);
    named.push_back(skipped.message());
  };
  auto skipping = KafkaImport::start(*engine_, options);
  ASSERT_TRUE(skipping.ok());
  EXPECT_TRUE(annal::test::eventually([&] {
    const auto p = skipping.value()->progress();
    return p.imported + p.duplicates + p.skipped == 4;
  }));
  const KafkaImport::Progress skipped = skipping.value()->progress();
  EXPECT_TRUE(skipping.value()->stop().ok());
  EXPECT_EQ(skipped.skipped, 2u);
  EXPECT_EQ(skipped.imported, 1u);    // order 3
  EXPECT_EQ(skipped.duplicates, 1u);  // order 1, which the stopping import appended
  EXPECT_NE(skipped.last_skipped.message().find("offset 2: no header annal.type and no text field eventType"), std::string::npos)
      << skipped.last_skipped.to_string();
  EXPECT_FALSE(engine_->stream_version("order-2").has_value());
  ASSERT_EQ(named.size(), 2u);  // each skipped message, not only the last
  EXPECT_NE(named[0].find("partition 0 offset 1: its value is not JSON"), std::string::npos) << named[0];
  EXPECT_NE(named[1].find("partition 0 offset 2: no header annal.type"), std::string::npos) << named[1];
  // The application's callback throws: the import stops, saying so; the process goes on.
  options.group = "throwing";
  options.on_skipped = [](const Status&) { throw std::runtime_error("no room in the dead letters"); };
  auto throwing = KafkaImport::start(*engine_, options);
  ASSERT_TRUE(throwing.ok());
  EXPECT_TRUE(annal::test::eventually([&] { return !throwing.value()->progress().error.ok(); }));
  const Status thrown = throwing.value()->stop();
  EXPECT_NE(thrown.message().find("on_skipped threw: no room in the dead letters"), std::string::npos) << thrown.to_string();
  // The callback stops its own import: that stop() cannot wait for the thread it runs on, so it
  // returns, and the import ends after that message. The owner's stop() then joins it.
  options.group = "stops-itself";
  std::atomic<KafkaImport*> self{nullptr};
  std::atomic<bool> asked{false};
  Status inner;
  options.on_skipped = [&](const Status&) {
    if (asked.load()) return;
    EXPECT_TRUE(annal::test::eventually([&] { return self.load() != nullptr; }));
    inner = self.load()->stop();
    asked.store(true);
  };
  auto itself = KafkaImport::start(*engine_, options);
  ASSERT_TRUE(itself.ok());
  self.store(itself.value().get());
  EXPECT_TRUE(annal::test::eventually([&] { return asked.load(); }));
  EXPECT_TRUE(inner.ok()) << inner.to_string();
  EXPECT_TRUE(itself.value()->stop().ok());
  EXPECT_GE(itself.value()->progress().skipped, 1u);
  ASSERT_TRUE(engine_->close().ok());
}

// A message's made-up id names its cluster: the same topic name on another cluster, at the same
// offsets, holds other events, and all of them are imported. A record of an annal export without
// annal.id is known by (annal.source, annal.sequence): its copy (a late request's) is not
// imported twice.
TEST_F(KafkaTest, ImportTellsClustersApartAndKnowsAnExportsCopies) {
  annal::test::Watchdog watchdog("kafka import, two clusters and a copy");
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  rd_kafka_mock_cluster_t* other = rd_kafka_mock_cluster_new(host_.get(), 1);
  rd_kafka_mock_topic_create(other, "event-stream", 1, 1);
  const std::string created = R"({"eventType": "OrderCreated", "orderId": "7"})" "\n";
  const std::string cancelled = R"({"eventType": "OrderCancelled", "orderId": "7"})" "\n";
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(created, "-t event-stream"));
  {
    const std::string file = dir_.path() + "/other";
    std::FILE* out = std::fopen(file.c_str(), "w");
    ASSERT_NE(out, nullptr);
    std::fputs(cancelled.c_str(), out);
    std::fclose(out);
    const annal::test::ProgramRun sent = annal::test::run_program(std::string(ANNAL_KCAT) + " -P -b " +
                                                                  rd_kafka_mock_cluster_bootstraps(other) +
                                                                  " -t event-stream -l " + file);
    ASSERT_EQ(sent.exit_code, 0) << sent.output;
  }
  // An export's record and its copy: no annal.id, the same source and sequence.
  for (int copy = 0; copy < 2; ++copy) {
    ASSERT_NO_FATAL_FAILURE(send_with_kcat(R"({"orderId": "9"})" "\n",
                                           "-t event-stream -H annal.source=store-x -H annal.sequence=5 "
                                           "-H annal.type=OrderPaid"));
  }
  auto opened = Engine::open(dir_.path() + "/store", {});
  ASSERT_TRUE(opened.ok());
  engine_ = std::move(opened).value();
  KafkaImportOptions options{.brokers = rd_kafka_mock_cluster_bootstraps(cluster_),
                             .topic = "event-stream",
                             .group = "importer",
                             .settings = {{"log_level", "0"}},
                             .stream_field = "orderId",
                             .stream_prefix = "order-"};
  for (const char* brokers : {rd_kafka_mock_cluster_bootstraps(cluster_), rd_kafka_mock_cluster_bootstraps(other)}) {
    options.brokers = brokers;
    auto import = KafkaImport::start(*engine_, options);
    ASSERT_TRUE(import.ok()) << import.status().to_string();
    EXPECT_TRUE(annal::test::eventually([&] { return import.value()->progress().caught_up; }));
    EXPECT_TRUE(import.value()->stop().ok());
  }
  EXPECT_EQ(engine_->stream_version("order-7"), std::optional<std::uint64_t>(1));  // created, then cancelled
  EXPECT_EQ(engine_->stream_version("order-9"), std::optional<std::uint64_t>(0));  // once
  ASSERT_TRUE(engine_->close().ok());
  rd_kafka_mock_cluster_destroy(other);
}

// Brokers unreachable at start: the import says so within its start timeout, rather than wait for
// ever. Brokers going down while it runs: it says what it retries, and once they are back says so
// even with nothing new to read (it went on saying it retried, until a message came), and goes on.
TEST_F(KafkaTest, ImportSaysWhyItCannotReachKafka) {
  annal::test::Watchdog watchdog("kafka import, brokers unreachable");
  auto opened = Engine::open(dir_.path() + "/store", {});
  ASSERT_TRUE(opened.ok());
  engine_ = std::move(opened).value();
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  KafkaImportOptions options{.brokers = "127.0.0.1:1",  // nothing listens on port 1
                             .topic = "event-stream",
                             .group = "importer",
                             .settings = {{"log_level", "0"}},
                             .stream_field = "orderId",
                             .stream_prefix = "order-",
                             .start_timeout = std::chrono::milliseconds(2000)};
  const auto unreachable = KafkaImport::start(*engine_, options);
  ASSERT_FALSE(unreachable.ok());
  EXPECT_NE(unreachable.status().message().find("127.0.0.1:1"), std::string::npos) << unreachable.status().to_string();
  EXPECT_NE(unreachable.status().message().find("no metadata for topic event-stream"), std::string::npos)
      << unreachable.status().to_string();
  options.brokers = rd_kafka_mock_cluster_bootstraps(cluster_);
  options.start_timeout = std::chrono::minutes(1);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(R"({"eventType": "OrderCreated", "orderId": "1"})" "\n", "-t event-stream"));
  auto import = KafkaImport::start(*engine_, options);
  ASSERT_TRUE(import.ok()) << import.status().to_string();
  EXPECT_TRUE(annal::test::eventually([&] { return import.value()->progress().caught_up; }));
  for (int broker = 1; broker <= kBrokers; ++broker) rd_kafka_mock_broker_set_down(cluster_, broker);
  EXPECT_TRUE(annal::test::eventually([&] { return !import.value()->progress().retrying.ok(); }));
  for (int broker = 1; broker <= kBrokers; ++broker) rd_kafka_mock_broker_set_up(cluster_, broker);
  EXPECT_TRUE(annal::test::eventually([&] { return import.value()->progress().retrying.ok(); }))
      << import.value()->progress().retrying.to_string();
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(R"({"eventType": "OrderCreated", "orderId": "2"})" "\n", "-t event-stream"));
  EXPECT_TRUE(annal::test::eventually([&] {
    const KafkaImport::Progress p = import.value()->progress();
    return p.imported == 2 && p.retrying.ok();
  }));
  EXPECT_TRUE(import.value()->stop().ok());
  ASSERT_TRUE(engine_->close().ok());
}

// A record Kafka refuses for good (here: authorisation) is fatal under the gapless guarantee: the
// export says so at once, even with no event left to send, and stops at its next event.
TEST_F(KafkaTest, ARecordRefusedForGoodStopsTheExportAndSaysWhy) {
  annal::test::Watchdog watchdog("kafka export, fatal");
  auto exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  wait_delivered(*exporter, append(10));
  constexpr std::int16_t kProduce = 0;  // the Produce request's API key
  rd_kafka_mock_push_request_errors(cluster_, kProduce, 1, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  append(1);
  EXPECT_TRUE(annal::test::eventually([&] { return !exporter->failure().ok(); }));
  EXPECT_NE(exporter->failure().message().find("uthoriz"), std::string::npos) << exporter->failure().to_string();
  EXPECT_EQ(exporter->health().message(), exporter->failure().message());
  append(1);
  EXPECT_TRUE(annal::test::eventually([&] { return !engine_->projection_status("export_kafka").value().error.ok(); }));
  ASSERT_TRUE(engine_->close().ok());
}

// A store restored from a backup gives its new events sequences the topic holds for the events
// the store had after the backup: the export finds that the store's event there is not the
// topic's record, and stops saying so, rather than take the new events for exported.
TEST_F(KafkaTest, AStoreRestoredFromABackupIsNotTakenForWhatItExported) {
  annal::test::Watchdog watchdog("kafka export of a restored store");
  auto exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  wait_delivered(*exporter, append(200));
  ASSERT_TRUE(engine_->close().ok());
  exporter.reset();
  const annal::test::DirectoryBackup backup(dir_.path());
  exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  const Receipt before_restore = append(300);
  wait_delivered(*exporter, before_restore);
  ASSERT_TRUE(engine_->close().ok());
  exporter.reset();
  backup.restore();
  {
    auto opened = Engine::open(dir_.path(), {});
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    engine_ = std::move(opened).value();
    append(400);  // past the topic's last sequence
    ASSERT_TRUE(engine_->close().ok());
  }
  exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(annal::test::eventually([&] { return !exporter->failure().ok(); }));
  EXPECT_NE(exporter->failure().message().find("disagree at sequence"), std::string::npos) << exporter->failure().to_string();
  EXPECT_LE(exporter->delivered(), before_restore.last_sequence);
  EXPECT_TRUE(annal::test::eventually([&] { return !engine_->projection_status("export_kafka").value().error.ok(); }));
  ASSERT_TRUE(engine_->close().ok());
}

// A record of this source in partition 0, ahead of the store, as a restored store's old timeline
// leaves one (written here by kcat): the store's next events of partition 0 would be taken for
// exported, but the topic does not hold them. The export stops at the first.
TEST_F(KafkaTest, AnEventTakenForExportedMustBeInTheTopic) {
  annal::test::Watchdog watchdog("kafka export, an event missing from the topic");
  const std::uint64_t ghost = export_then_write_ghost(/*claims_all_delivered=*/false);
  ASSERT_FALSE(HasFailure());
  auto exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  append(100);
  EXPECT_TRUE(annal::test::eventually([&] { return !exporter->failure().ok(); }));
  EXPECT_NE(exporter->failure().message().find("has no record of it in partition 0"), std::string::npos)
      << exporter->failure().to_string();
  EXPECT_LT(exporter->delivered(), ghost);
  ASSERT_TRUE(engine_->close().ok());
}

// The record the export resumes from is checked too: here a record of this source in partition 0
// claims (annal.delivered) that everything up to its own sequence was exported, as an old
// timeline's last record does when a restored store has grown back to exactly that sequence. The
// store's event there is another: the export stops, rather than take the store's events of
// partition 0 up to it for exported.
TEST_F(KafkaTest, TheEventAtTheResumePointIsCheckedToo) {
  annal::test::Watchdog watchdog("kafka export, the resume point checked");
  const std::uint64_t ghost = export_then_write_ghost(/*claims_all_delivered=*/true);
  ASSERT_FALSE(HasFailure());
  {
    auto opened = Engine::open(dir_.path(), {});
    ASSERT_TRUE(opened.ok());
    engine_ = std::move(opened).value();
    append(39);  // the log now ends just before the ghost: the export must not take it as caught up
    ASSERT_TRUE(engine_->close().ok());
    engine_.reset();
  }
  auto opened = Engine::open(dir_.path(), {});
  ASSERT_TRUE(opened.ok());
  Status refused = opened.value()->add_projection("export_kafka", std::make_shared<KafkaExport>(options()), {});
  EXPECT_NE(refused.message().find("needs this store's log to hold sequence " + std::to_string(ghost)), std::string::npos)
      << refused.to_string();
  engine_ = std::move(opened).value();
  append(100);  // past it: the event there is checked, and is not the ghost
  auto exporter = std::make_shared<KafkaExport>(options());
  ASSERT_TRUE(engine_->add_projection("export_kafka", exporter, {}).ok());
  EXPECT_TRUE(annal::test::eventually([&] { return !exporter->failure().ok(); }));
  EXPECT_NE(exporter->failure().message().find("disagree at sequence " + std::to_string(ghost)), std::string::npos)
      << exporter->failure().to_string();
  EXPECT_LT(exporter->delivered(), ghost);
  ASSERT_TRUE(engine_->close().ok());
}

// Asking for the partitions' ends fails at start (a leader moving): the start asks again, and
// resumes as if nothing happened.
TEST_F(KafkaTest, AStartAsksAgainWhenAPartitionsEndsCannotBeHad) {
  annal::test::Watchdog watchdog("kafka export, offsets refused at start");
  ASSERT_NO_FATAL_FAILURE(export_and_close(100));
  constexpr std::int16_t kListOffsets = 2;  // the ListOffsets request's API key
  rd_kafka_mock_push_request_errors(cluster_, kListOffsets, 3, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
  auto exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  wait_delivered(*exporter, append(10));
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// Asking a partition's end is answered once with UNKNOWN_TOPIC_OR_PARTITION (a retriable
// error in Kafka's protocol: a broker whose metadata has not caught up answers it). librdkafka's
// consumer takes a failed ListOffsets of that kind for permanent: it gives up on the partition
// (auto.offset.reset=error) and never asks again, while the read-back "waits it out" to its
// deadline. The start must ask again and resume, as docs/kafka.md promises ("a leader that moves or
// answers with an error is asked again").
TEST_F(KafkaTest, AStartAsksAgainWhenAPartitionsEndIsRefusedOnce) {
  annal::test::Watchdog watchdog("kafka export, an end refused once at start");
  ASSERT_NO_FATAL_FAILURE(export_and_close(100));
  constexpr std::int16_t kListOffsets = 2;  // the ListOffsets request's API key
  rd_kafka_mock_push_request_errors(cluster_, kListOffsets, 1, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  auto opened = Engine::open(dir_.path(), {});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  KafkaExportOptions with = options();
  with.start_timeout = std::chrono::seconds(20);
  auto exporter = std::make_shared<KafkaExport>(with);
  const Status added = engine_->add_projection("export_kafka", exporter, {});
  ASSERT_TRUE(added.ok()) << added.to_string();
  wait_delivered(*exporter, append(10));
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// A partition's leader is down when the export starts: the start ends at its start_timeout and says
// which partition it waited for, instead of waiting for the broker; once the broker is back, a
// start resumes as if nothing had happened.
TEST_F(KafkaTest, AStartWhileAPartitionsLeaderIsDownEndsAtItsTimeout) {
  annal::test::Watchdog watchdog("kafka export, a leader down at start");
  ASSERT_NO_FATAL_FAILURE(export_and_close(100));
  // Partition 2's leader alone goes down.
  for (int partition = 0; partition < kPartitions; ++partition) {
    rd_kafka_mock_partition_set_leader(cluster_, "orders", partition, partition == 2 ? 3 : 1);
  }
  rd_kafka_mock_broker_set_down(cluster_, 3);
  {
    auto opened = Engine::open(dir_.path(), {});
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    engine_ = std::move(opened).value();
    KafkaExportOptions with = options();
    with.start_timeout = std::chrono::milliseconds(3000);
    const Status added = engine_->add_projection("export_kafka", std::make_shared<KafkaExport>(with), {});
    ASSERT_FALSE(added.ok());
    EXPECT_NE(added.message().find("did not finish in time"), std::string::npos) << added.to_string();
    EXPECT_NE(added.message().find("of partition 2 "), std::string::npos) << added.to_string();
    ASSERT_TRUE(engine_->close().ok());
  }
  rd_kafka_mock_broker_set_up(cluster_, 3);
  auto exporter = open_with_export();
  ASSERT_FALSE(HasFailure());
  wait_delivered(*exporter, append(10));
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// `annal export kafka` stopped (SIGTERM) while its start waits for a partition's leader that is
// down, well within its start timeout: it stops there, says so, and exits 0.
TEST_F(KafkaTest, TheToolStopsWhileItsStartWaitsForALeaderThatIsDown) {
  annal::test::Watchdog watchdog("annal export kafka, stopped while starting");
  ASSERT_NO_FATAL_FAILURE(export_and_close(100));
  rd_kafka_mock_partition_set_leader(cluster_, "orders", 1, 2);
  rd_kafka_mock_broker_set_down(cluster_, 2);
  annal::test::SpawnedTool child(ANNAL_CLI, {"export", "kafka", dir_.path(), "--brokers",
                                             rd_kafka_mock_cluster_bootstraps(cluster_), "--topic", "orders", "--source",
                                             "store-a", "--set", "log_level=0", "--start-timeout", "3600"});
  ASSERT_TRUE(child.wait_for("starting: reaching topic orders")) << child.printed();
  EXPECT_EQ(child.end_with(SIGTERM), 0);
  EXPECT_TRUE(child.wait_for("stopped while starting")) << child.printed();
}

// `annal import kafka` stopped (SIGTERM) while its start waits for brokers that do not answer,
// well within its start timeout: it stops there, says so, and exits 0. (Found by a review: the
// import's start had no stop, and the tool looked at its signals only after it.)
TEST_F(KafkaTest, TheImportToolStopsWhileItsStartWaitsForKafka) {
  annal::test::Watchdog watchdog("annal import kafka, stopped while starting");
  annal::test::SpawnedTool child(ANNAL_CLI, {"import", "kafka", dir_.path() + "/store", "--brokers", "127.0.0.1:1",
                                             "--topic", "event-stream", "--group", "importer", "--set", "log_level=0",
                                             "--start-timeout", "3600"});
  ASSERT_TRUE(child.wait_for("starting: reaching topic event-stream")) << child.printed();
  EXPECT_EQ(child.end_with(SIGTERM), 0);
  EXPECT_TRUE(child.wait_for("stopped while starting")) << child.printed();
}

// `annal export kafka` stopped (SIGTERM) while its read-back reads a chunk of a partition whose
// leader went down after the partitions' ends were had: it stops there too. (Found by a review:
// the chunk's reads asked only the deadline.) The moment is timed from librdkafka's debug log: the
// read-back's consumer assigned partition 3 at the first chunk's offset (this source's 100
// events, then another's 5,000 records in partition 3: always the same offset).
TEST_F(KafkaTest, TheToolStopsWhileItsReadBackReadsAChunkFromALeaderThatWentDown) {
  annal::test::Watchdog watchdog("annal export kafka, stopped while reading back a chunk");
  // Another source's records after this source's last in partition 3: several chunks to read
  // back, the second one's fetch still unanswered when the test, told it began, takes the leader
  // down.
  ASSERT_NO_FATAL_FAILURE(slow_partition_3_after(100, 5000));
  const auto child = export_tool("consumer,fetch");
  ASSERT_TRUE(child->wait_for("Partition orders [3] start fetching at offset 3023", std::chrono::seconds(60)))
      << last_printed(*child);
  rd_kafka_mock_broker_set_down(cluster_, 3);
  EXPECT_EQ(child->end_with(SIGTERM), 0);
  EXPECT_TRUE(child->wait_for("stopped while starting"))
      << last_printed(*child);
}

// Retention removes a partition's oldest records while the start reads it back (here
// partition 3, where another source wrote 20,000 records after this source's last: 20 chunks to
// read back; the mock cluster keeps about 5 MB a partition, and 6 MB more are written once the
// read-back has begun). docs/kafka.md: "the read-back finds an older or no record for that
// partition and the events after it are produced again". The read-back's next chunk starts below
// the partition's new start: librdkafka answers with auto.offset.reset=error's error, and the
// start fails (the tool exits 1, "No offset to automatically reset to"), at every start that
// reads back while retention runs.
TEST_F(KafkaTest, RetentionDuringTheReadBackDoesNotFailTheStart) {
  annal::test::Watchdog watchdog("kafka export, retention during the read-back");
  // Each chunk's fetch takes half a second: the 6 MB land while most chunks are still to read.
  ASSERT_NO_FATAL_FAILURE(slow_partition_3_after(100, 20000));
  const auto child = export_tool("fetch", {"--until-caught-up"});
  // The second chunk of partition 3 (this source's 23 records, then the other's 20,000).
  ASSERT_TRUE(child->wait_for("Fetch topic orders [3] at offset 18023", std::chrono::seconds(60)))
      << last_printed(*child);
  std::string big;
  const std::string filler(10'000, 'x');
  for (int i = 0; i < 600; ++i) big += "{\"filler\":\"" + filler + "\"}\n";
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(big, "-t orders -p 3 -k other -H annal.source=store-b"));
  EXPECT_TRUE(child->wait_for("from sequence"))
      << last_printed(*child);
  (void)child->end_with(SIGTERM);
}

// A chunk of the read-back stops at the first PARTITION_EOF, even one below the chunk's
// end. A replica whose high watermark lags the end the start asked (a follower the leader
// names as preferred replica with client.rack, or a new leader whose watermark has not caught
// up after a failover) answers the fetch at its own watermark with an EOF there: the chunk's
// records above it are never read. Here partition 3 holds another source's 1,000 records, then
// this source's records of two runs; once the first chunk has begun, its leader names a follower
// whose watermark is the first run's end. The read-back takes the first run's last record for
// the last one there, and the start produces the second run's records of partition 3 again.
// The follower catches up once it has answered at its watermark (the read-back fetches past
// it): until then librdkafka asks it again (the mock cluster's follower gives the whole batch
// its watermark is in, and OFFSET_NOT_AVAILABLE past that batch), and the start waits, as for a
// real follower. (Caught up only once the start was over, the test waited for itself.)
TEST_F(KafkaTest, AChunkIsReadToItsEndPastALaggingReplicasEof) {
  annal::test::Watchdog watchdog("kafka export, a lagging replica's EOF inside a chunk");
  std::string foreign;
  for (int i = 0; i < 1000; ++i) foreign += "{\"other\":" + std::to_string(i) + "}\n";
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(foreign, "-t orders -p 3 -k other -H annal.source=store-b"));
  const auto in_partition_3 = [&] {
    std::int64_t count = 0;
    for (const Record& record : topic()) count += record.partition == 3 ? 1 : 0;
    return count;
  };
  ASSERT_NO_FATAL_FAILURE(export_and_close(100));
  const std::int64_t first_run_end = in_partition_3();
  ASSERT_NO_FATAL_FAILURE(export_and_close(100));
  const std::int64_t end = in_partition_3();
  ASSERT_GT(first_run_end, 1000);
  ASSERT_GT(end, first_run_end);
  rd_kafka_mock_partition_set_leader(cluster_, "orders", 3, 3);
  // The first chunk's first fetch is still unanswered when the follower is named.
  rd_kafka_mock_broker_set_rtt(cluster_, 3, 500);
  const auto child = export_tool("consumer,fetch", {"--set", "client.rack=rack-1", "--until-caught-up"});
  ASSERT_TRUE(child->wait_for("Partition orders [3] start fetching at offset " + std::to_string(end - 1000),
                             std::chrono::seconds(60)))
      << last_printed(*child);
  // The watermark first: any fetch the follower answers has it.
  rd_kafka_mock_partition_set_follower_wmarks(cluster_, "orders", 3, -1, first_run_end);
  rd_kafka_mock_partition_set_follower(cluster_, "orders", 3, 1);
  // The follower (broker 1) asked past its watermark: its answer there, with the EOF, was read.
  const std::string asked = "/1: Fetch topic orders [3] at offset ";
  std::size_t scanned = 0;
  ASSERT_TRUE(child->wait_until([&](const std::string& printed) {
    for (std::size_t at = printed.find(asked, scanned); at != std::string::npos; at = printed.find(asked, at + 1)) {
      std::int64_t offset = 0;
      const auto parsed = std::from_chars(printed.data() + at + asked.size(), printed.data() + printed.size(), offset);
      if (parsed.ptr == printed.data() + printed.size()) return false;  // its digits may go on: read again
      scanned = at + 1;
      if (offset > first_run_end) return true;
    }
    return false;
  }, std::chrono::seconds(50))) << last_printed(*child);
  // The follower caught up.
  rd_kafka_mock_partition_set_follower_wmarks(cluster_, "orders", 3, -1, -1);
  EXPECT_TRUE(child->wait_for("from sequence"))
      << last_printed(*child);
  rd_kafka_mock_partition_set_follower(cluster_, "orders", 3, -1);
  rd_kafka_mock_broker_set_rtt(cluster_, 3, 0);
  EXPECT_EQ(child->end_with(SIGTERM), 0);
  auto opened = Engine::open(dir_.path(), {});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// Retention cuts a chunk of the read-back in the middle: its first records were read,
// the next fetch is below the partition's new start, and the chunk is read on from there. The
// records read before the cut stay among those found, so the lowest of them is taken for where
// the partition's records begin (read_from), and the events whose records retention removed
// between the two are taken for events "the topic has no record of": the export stops saying
// this store is not the one that exported there. Here a burst exported while the brokers were
// down (every record claims nothing acknowledged, annal.delivered=0, so the start reads the
// whole partition back and checks every event), 80 records of 50 KB in batches of 10; other
// records are written while the start reads the second batch, and the mock cluster drops about
// half of the burst's.
TEST_F(KafkaTest, RetentionInsideAChunkIsNotTakenForAnotherStore) {
  annal::test::Watchdog watchdog("kafka export, retention inside a chunk of the read-back");
  for (int partition = 0; partition < kPartitions; ++partition) rd_kafka_mock_partition_set_leader(cluster_, "orders", partition, 3);
  {
    auto exporter = open_with_export({{"batch.num.messages", "10"}});
    ASSERT_FALSE(HasFailure());
    for (int broker = 1; broker <= kBrokers; ++broker) rd_kafka_mock_broker_set_down(cluster_, broker);
    const std::string payload = "{\"big\":\"" + std::string(50'000, 'b') + "\"}";
    const auto bytes = std::as_bytes(std::span(payload));
    const EventData event{.type = "Counted", .payload = {bytes.begin(), bytes.end()}};
    Receipt last;
    for (int i = 0; i < 80; ++i) {
      auto receipt = engine_->append("big", ExpectedVersion::any(), {&event, 1});
      ASSERT_TRUE(receipt.ok()) << receipt.status().to_string();
      last = receipt.value();
    }
    ASSERT_TRUE(engine_->wait_durable(last, Engine::Clock::now() + std::chrono::minutes(2)).ok());
    // Every record produced while nothing can be acknowledged.
    ASSERT_TRUE(annal::test::eventually(
        [&] { return engine_->projection_status("export_kafka").value().applied >= last.last_sequence; }));
    for (int broker = 1; broker <= kBrokers; ++broker) rd_kafka_mock_broker_set_up(cluster_, broker);
    wait_delivered(*exporter, last);
    ASSERT_TRUE(engine_->close().ok());
    engine_.reset();
  }
  int partition = -1;
  for (const Record& record : topic()) partition = record.partition;
  ASSERT_GE(partition, 0);
  rd_kafka_mock_broker_set_rtt(cluster_, 3, 500);
  const auto child = export_tool("fetch", {"--until-caught-up"});
  ASSERT_TRUE(child->wait_for("Fetch topic orders [" + std::to_string(partition) + "] at offset 10 ", std::chrono::seconds(60)))
      << last_printed(*child);
  // 2.6 MB more: the partition's oldest 4 batches (2 MB) go.
  std::string other;
  const std::string filler(10'000, 'x');
  for (int i = 0; i < 260; ++i) other += "{\"filler\":\"" + filler + "\"}\n";
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(other, "-t orders -p " + std::to_string(partition) + " -k other -H annal.source=store-b"));
  (void)child->wait_for("\n(never printed)\n", std::chrono::minutes(2));  // to its end
  EXPECT_TRUE(child->stderr_closed());
  EXPECT_EQ(child->printed().find("disagree"), std::string::npos)
      << child->printed().substr(child->printed().find("disagree") - std::min<std::size_t>(child->printed().find("disagree"), 100), 700);
  EXPECT_EQ(child->end_with(SIGTERM), 0);
}

// Retention cuts a chunk of the read-back twice. The first cut is read on from the
// partition's new start (RetentionDuringTheReadBackDoesNotFailTheStart); a second one in the same
// chunk, while the rest of it is read from there, gets auto.offset.reset=error's error again, and
// the start fails ("reading partition 3: Local: No offset to automatically reset to") instead of
// reading on from the newer start, as docs/kafka.md says of retention during the read-back. Here
// partition 3 holds this source's records, then another's 4.5 MB in batches of 100 KB: one chunk,
// read a batch a fetch from a slow leader. 1.5 MB more are written once the chunk's read began (the
// mock cluster keeps about 5 MB a partition: the oldest batches go, past the read), and again once
// the chunk is read on from the new start.
TEST_F(KafkaTest, RetentionCuttingAChunkTwiceDoesNotFailTheStart) {
  annal::test::Watchdog watchdog("kafka export, retention cutting a chunk of the read-back twice");
  ASSERT_NO_FATAL_FAILURE(export_and_close(100));
  const std::string filler(10'000, 'x');
  const auto fillers = [&](int count) {
    std::string lines;
    for (int i = 0; i < count; ++i) lines += "{\"filler\":\"" + filler + "\"}\n";
    return lines;
  };
  ASSERT_NO_FATAL_FAILURE(
      send_with_kcat(fillers(450), "-t orders -p 3 -k other -H annal.source=store-b -X batch.num.messages=10"));
  rd_kafka_mock_partition_set_leader(cluster_, "orders", 3, 3);
  rd_kafka_mock_broker_set_rtt(cluster_, 3, 500);
  const auto child = export_tool("fetch,topic,consumer", {"--until-caught-up"});
  ASSERT_TRUE(child->wait_for("Start consuming orders [3] at offset 0 ", std::chrono::seconds(60))) << last_printed(*child);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(fillers(150), "-t orders -p 3 -k other -H annal.source=store-b"));
  ASSERT_TRUE(child->wait_for("fetch failed due to requested offset not available", std::chrono::seconds(60)))
      << last_printed(*child);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(fillers(150), "-t orders -p 3 -k other -H annal.source=store-b"));
  EXPECT_TRUE(child->wait_for("from sequence")) << last_printed(*child);
  EXPECT_EQ(child->printed().find("No offset to automatically reset to"), std::string::npos) << last_printed(*child);
  (void)child->end_with(SIGTERM);
}

// A fetch of the read-back answered with an error librdkafka retries by itself (a storage error
// on the leader, an unknown server error): the start waits it out, as it does for the ends,
// rather than fail.
TEST_F(KafkaTest, AChunkWhoseFetchFailsOnceIsReadAgain) {
  annal::test::Watchdog watchdog("kafka export, a chunk's fetch failing once");
  ASSERT_NO_FATAL_FAILURE(slow_partition_3_after(100, 5000));
  const auto child = export_tool("fetch", {"--until-caught-up"});
  ASSERT_TRUE(child->wait_for("Fetch topic orders [3] at offset 3023", std::chrono::seconds(60))) << last_printed(*child);
  constexpr std::int16_t kFetch = 1;  // the Fetch request's API key
  rd_kafka_mock_push_request_errors(cluster_, kFetch, 2, RD_KAFKA_RESP_ERR_UNKNOWN,
                                    RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR);
  EXPECT_TRUE(child->wait_for("from sequence", std::chrono::seconds(60))) << last_printed(*child);
  EXPECT_EQ(child->end_with(SIGTERM), 0) << last_printed(*child);
}

// The topic's metadata answers LEADER_NOT_AVAILABLE (a topic just created, whose partitions have
// no leader yet; a controller moving): a retriable error, not a missing topic. The start asks
// again until its timeout, and resumes once the leaders are there.
TEST_F(KafkaTest, ATopicWhoseLeadersAreNotAvailableYetIsAskedAgain) {
  annal::test::Watchdog watchdog("kafka export, a topic whose leaders are not available yet");
  ASSERT_NO_FATAL_FAILURE(export_and_close(100));
  rd_kafka_mock_topic_set_error(cluster_, "orders", RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
  const auto child = export_tool("metadata", {"--until-caught-up"});
  const bool answered = child->wait_for("Leader not available", std::chrono::seconds(60));
  rd_kafka_mock_topic_set_error(cluster_, "orders", RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(answered) << last_printed(*child);
  EXPECT_TRUE(child->wait_for("from sequence", std::chrono::seconds(60))) << last_printed(*child);
  EXPECT_EQ(child->printed().find("does not exist"), std::string::npos) << last_printed(*child);
  (void)child->end_with(SIGTERM);
}

// A fetch of the read-back answered once with OFFSET_OUT_OF_RANGE while the partition's start has
// not moved (a replica answering from a log whose start differs from the leader's, a broker's
// transient error): auto.offset.reset=error reports it as it reports retention. It must not be
// taken for retention without a look at the partition's start: taken for one, the partition's
// start counts as reached at that chunk, this source's records below it are never read, and its
// events there are produced again. Here partition 3 holds this source's records (every one
// claiming nothing acknowledged: a long linger), then another source's 5,000; the fetch of a
// chunk of those fails once.
TEST_F(KafkaTest, AnOffsetOutOfRangeThatIsNoRetentionIsNotTakenForTheStartOfThePartition) {
  annal::test::Watchdog watchdog("kafka export, a spurious offset out of range in the read-back");
  {
    auto exporter = open_with_export({{"linger.ms", "2000"}});
    ASSERT_FALSE(HasFailure());
    wait_delivered(*exporter, append(100));
    ASSERT_TRUE(engine_->close().ok());
    engine_.reset();
  }
  std::string lines;
  for (int i = 0; i < 5000; ++i) lines += "{\"other\":" + std::to_string(i) + "}\n";
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(lines, "-t orders -p 3 -k other -H annal.source=store-b"));
  rd_kafka_mock_partition_set_leader(cluster_, "orders", 3, 3);
  rd_kafka_mock_broker_set_rtt(cluster_, 3, 500);
  const auto child = export_tool("fetch", {"--until-caught-up"});
  std::size_t ours_in_3 = 0;
  for (const Record& record : topic()) {
    ours_in_3 += record.partition == 3 && record.headers.count("annal.source") != 0 &&
                 record.headers.at("annal.source") == "store-a";
  }
  ASSERT_GT(ours_in_3, 0u);
  ASSERT_TRUE(child->wait_for("Fetch topic orders [3] at offset " + std::to_string(3000 + ours_in_3),
                              std::chrono::seconds(60)))
      << last_printed(*child);
  constexpr std::int16_t kFetch = 1;  // the Fetch request's API key
  rd_kafka_mock_push_request_errors(cluster_, kFetch, 1, RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE);
  (void)child->wait_for("\n(never printed)\n", std::chrono::minutes(2));  // to its end
  EXPECT_TRUE(child->stderr_closed()) << last_printed(*child);
  EXPECT_EQ(child->end_with(SIGTERM), 0) << last_printed(*child);
  rd_kafka_mock_broker_set_rtt(cluster_, 3, 0);
  auto opened = Engine::open(dir_.path(), {});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  expect_exported_once();
  ASSERT_TRUE(engine_->close().ok());
}

// The group's offset commits fail for a while (the coordinator cannot write them) while messages
// go on being imported. Whoever reads the partition next (this import started again, another
// member after a rebalance) resumes from the last offset committed, and the messages since come
// back. The engine answers a repeated id only within its idempotency window (here 100 events, as
// 65,536 are for 65,536 messages): the import must not read further ahead of its last commit
// than that, or what came back is appended a second time.
TEST_F(KafkaTest, ImportDoesNotReadFarPastOffsetsItCouldNotCommit) {
  annal::test::Watchdog watchdog("kafka import, offset commits failing");
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(1, 300), "-t event-stream"));
  auto opened = Engine::open(dir_.path() + "/store", {.idempotency_window = 100});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  KafkaImportOptions options = seed_import();
  options.batch_max = 10;
  constexpr std::int16_t kOffsetCommit = 8;  // the OffsetCommit request's API key
  const std::vector<rd_kafka_resp_err_t> refusals(3000, RD_KAFKA_RESP_ERR_UNKNOWN);
  rd_kafka_mock_push_request_errors_array(cluster_, kOffsetCommit, refusals.size(), refusals.data());
  {
    auto import = KafkaImport::start(*engine_, options);
    ASSERT_TRUE(import.ok()) << import.status().to_string();
    // Every message read, or the import holding back with commits it could not make.
    EXPECT_TRUE(annal::test::eventually([&] {
      const auto p = import.value()->progress();
      return p.imported == 300 || !p.error.ok() || (p.imported >= 10 && !p.retrying.ok());
    }));
    (void)import.value()->stop();
  }
  rd_kafka_mock_clear_request_errors(cluster_, kOffsetCommit);
  {
    auto import = KafkaImport::start(*engine_, options);
    ASSERT_TRUE(import.ok()) << import.status().to_string();
    EXPECT_TRUE(annal::test::eventually([&] {
      const auto p = import.value()->progress();
      return p.caught_up || !p.error.ok();
    }));
    EXPECT_TRUE(import.value()->stop().ok());
  }
  ASSERT_NO_FATAL_FAILURE(expect_orders_once(300));
  ASSERT_TRUE(engine_->close().ok());
}

// No brokers or no topic given: each user of Kafka says which, at once.
TEST_F(KafkaTest, NoBrokersOrNoTopicIsRefusedAtOnce) {
  auto opened = Engine::open(dir_.path(), {});
  ASSERT_TRUE(opened.ok());
  KafkaExportOptions no_brokers = options();
  no_brokers.brokers.clear();
  Status refused = opened.value()->add_projection("export_kafka", std::make_shared<KafkaExport>(no_brokers), {});
  EXPECT_EQ(refused.code(), ErrorCode::invalid_argument);
  EXPECT_NE(refused.message().find("Kafka export: no brokers given"), std::string::npos) << refused.to_string();
  KafkaExportOptions no_topic = options();
  no_topic.topic.clear();
  refused = opened.value()->add_projection("export_kafka", std::make_shared<KafkaExport>(no_topic), {});
  EXPECT_NE(refused.message().find("Kafka export: no topic given"), std::string::npos) << refused.to_string();
  // A source name longer than a read model keeps would make every read model pass its records over.
  KafkaExportOptions long_source = options();
  long_source.source.assign(256, 's');
  refused = opened.value()->add_projection("export_kafka", std::make_shared<KafkaExport>(long_source), {});
  EXPECT_EQ(refused.code(), ErrorCode::invalid_argument);
  EXPECT_NE(refused.message().find("longer than 255"), std::string::npos) << refused.to_string();
  KafkaImportOptions no_import_brokers;
  no_import_brokers.topic = "orders";
  no_import_brokers.group = "g";
  const auto import = KafkaImport::start(*opened.value(), no_import_brokers);
  ASSERT_FALSE(import.ok());
  EXPECT_NE(import.status().message().find("Kafka import: no brokers given"), std::string::npos)
      << import.status().to_string();
  EXPECT_TRUE(opened.value()->close().ok());
  const annal::test::ProgramRun tool = annal::test::run_program(std::string(ANNAL_CLI) + " export kafka " + dir_.path() +
                                                                " --brokers '' --topic orders --source store-a");
  EXPECT_NE(tool.exit_code, 0);
  EXPECT_NE(tool.output.find("no brokers given"), std::string::npos) << tool.output;
  const std::string never_made = dir_.path() + "/never-made";
  const annal::test::ProgramRun import_tool = annal::test::run_program(
      std::string(ANNAL_CLI) + " import kafka " + never_made + " --brokers '' --topic orders --group g");
  EXPECT_NE(import_tool.exit_code, 0);
  EXPECT_NE(import_tool.output.find("no brokers given"), std::string::npos) << import_tool.output;
  EXPECT_FALSE(std::filesystem::exists(never_made));  // refused before the store is made
  // An export reads a store: a misspelt directory is not made, empty, and "exported".
  const annal::test::ProgramRun export_tool = annal::test::run_program(
      std::string(ANNAL_CLI) + " export kafka " + never_made + " --brokers " + rd_kafka_mock_cluster_bootstraps(cluster_) +
      " --topic orders --source store-a --until-caught-up");
  EXPECT_EQ(export_tool.exit_code, 1) << export_tool.output;
  EXPECT_NE(export_tool.output.find("no store there"), std::string::npos) << export_tool.output;
  EXPECT_FALSE(std::filesystem::exists(never_made));
}

// An import whose batch (what a crash or a rebalance makes it read again) is larger than the
// engine's idempotency window would append those messages a second time, silently: refused at
// start, saying which two settings disagree. A window of 0 (none kept) likewise. (Found by a
// review: docs/kafka.md said "far above batch_max", nothing checked it.)
TEST_F(KafkaTest, AnImportTheEnginesIdempotencyWindowCannotCoverIsRefused) {
  for (const std::size_t window : {std::size_t{0}, std::size_t{999}}) {
    SCOPED_TRACE("idempotency_window " + std::to_string(window));
    auto opened = Engine::open(dir_.path() + "/store-" + std::to_string(window), {.idempotency_window = window});
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    KafkaImportOptions options;  // batch_max 1,000
    options.brokers = rd_kafka_mock_cluster_bootstraps(cluster_);
    options.topic = "orders";
    options.group = "importers";
    const auto import = KafkaImport::start(*opened.value(), options);
    ASSERT_FALSE(import.ok());
    EXPECT_EQ(import.status().code(), ErrorCode::invalid_argument);
    EXPECT_NE(import.status().message().find("idempotency_window " + std::to_string(window)), std::string::npos)
        << import.status().to_string();
    // A batch of 0 would pass the window's check with no window at all.
    options.batch_max = 0;
    const auto none = KafkaImport::start(*opened.value(), options);
    ASSERT_FALSE(none.ok());
    EXPECT_NE(none.status().message().find("batch_max must be at least 1"), std::string::npos) << none.status().to_string();
    EXPECT_TRUE(opened.value()->close().ok());
  }
}

TEST_F(KafkaTest, SettingsTheGuaranteeRestsOnAreRefused) {
  auto opened = Engine::open(dir_.path(), {});
  ASSERT_TRUE(opened.ok());
  KafkaExportOptions unsafe = options();
  unsafe.settings["enable.idempotence"] = "false";
  const Status refused = opened.value()->add_projection("export_kafka", std::make_shared<KafkaExport>(unsafe), {});
  EXPECT_EQ(refused.code(), ErrorCode::invalid_argument);
  EXPECT_NE(refused.message().find("enable.idempotence"), std::string::npos) << refused.to_string();
  // The read-back's own (it learns each partition's end from its EOF), refused on an empty topic
  // too, where nothing is read back.
  KafkaExportOptions ends = options();
  ends.settings["enable.partition.eof"] = "false";
  const Status eof = opened.value()->add_projection("export_kafka", std::make_shared<KafkaExport>(ends), {});
  EXPECT_EQ(eof.code(), ErrorCode::invalid_argument) << eof.to_string();
  // Under another name librdkafka takes for the same setting.
  for (const char* alias : {"metadata.broker.list", "topic.message.timeout.ms", "topic.delivery.timeout.ms",
                            "topic.partitioner", "topic.request.required.acks"}) {
    KafkaExportOptions aliased = options();
    aliased.settings[alias] = "1";
    const Status also = opened.value()->add_projection("export_kafka", std::make_shared<KafkaExport>(aliased), {});
    EXPECT_EQ(also.code(), ErrorCode::invalid_argument) << alias;
    EXPECT_NE(also.message().find(alias), std::string::npos) << also.to_string();
  }
  EXPECT_TRUE(opened.value()->close().ok());
}

// The import commits a partition's offsets once "the events appended before them are
// durable", which it learns by waiting for the receipt of the last append. A message whose event
// the store already has (a repeat, answered with the original's receipt, Receipt::duplicate)
// replaces that receipt with an older one: a new event appended just before it is then not waited
// for, and its message's offset is committed while the event is not durable. A crash then (power
// cut, kernel panic) loses the event for good: its offset is committed, it is never read again.
// Here durability comes every 20 s (Durability::interval), so the window is wide open: the offset
// past the new message is committed, and only afterwards is durable_sequence read, still short of
// the new event. (Correct code commits only after the sync: the test then passes in about 20 s.)
TEST_F(KafkaTest, ImportCommitsNoOffsetBeforeTheEventsBeforeItAreDurable) {
  annal::test::Watchdog watchdog("kafka import, commit before durability", std::chrono::seconds(180));
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  // An event the store has already, with an id: a message below repeats it.
  const engine::Id128 id{.hi = 0x1234, .lo = 0x5678};
  {
    auto opened = Engine::open(dir_.path() + "/store", {});
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    const std::string payload = R"({"orderId": "9"})";
    const EventData paid{.type = "OrderPaid", .payload = std::as_bytes(std::span(payload)), .event_id = id};
    const auto appended = opened.value()->append("order-9", ExpectedVersion::any(), {&paid, 1});
    ASSERT_TRUE(appended.ok()) << appended.status().to_string();
    ASSERT_TRUE(opened.value()->close().ok());  // durable
  }
  // Offset 0: a new event (order-1). Offset 1: the repeat of the event above.
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(R"({"eventType": "OrderCreated", "orderId": "1"})" "\n", "-t event-stream"));
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(R"({"orderId": "9"})" "\n", "-t event-stream -H annal.type=OrderPaid -H annal.id=" +
                                                                     engine::format_id(id)));
  engine::Options slow_sync;
  slow_sync.journal.durability = journal::Durability::interval;
  slow_sync.journal.sync_interval = std::chrono::seconds(20);
  auto opened = Engine::open(dir_.path() + "/store", slow_sync);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  const KafkaImportOptions options{.brokers = rd_kafka_mock_cluster_bootstraps(cluster_),
                                   .topic = "event-stream",
                                   .group = "importer",
                                   .settings = {{"log_level", "0"}},
                                   .stream_field = "orderId",
                                   .stream_prefix = "order-"};
  auto import = KafkaImport::start(*engine_, options);
  ASSERT_TRUE(import.ok()) << import.status().to_string();
  ASSERT_TRUE(annal::test::eventually([&] {
    const auto p = import.value()->progress();
    return p.imported + p.duplicates == 2 || !p.error.ok();
  }));
  EXPECT_EQ(import.value()->progress().imported, 1u);
  EXPECT_EQ(import.value()->progress().duplicates, 1u);
  // The new event is the store's last (the repeat appended nothing); reads show only durable ones.
  ASSERT_EQ(engine_->stream_version("order-1"), std::optional<std::uint64_t>(0));
  const std::uint64_t new_event = engine_->last_sequence();
  const auto committed = [&] { return committed_offset("importer", "event-stream", 0); };
  // Once the offset past both messages is committed (at once here; after the sync, correctly) ...
  ASSERT_TRUE(annal::test::eventually([&] { return committed() == 2; }, std::chrono::seconds(90)));
  // ... the new event must be durable: committed first, durable_sequence read after.
  EXPECT_GE(engine_->durable_sequence(), new_event)
      << "offset 2 committed while event " << new_event << " (offset 0) is not durable: a crash now loses it for good";
  EXPECT_TRUE(import.value()->stop().ok());
  ASSERT_TRUE(engine_->close().ok());
}

// As for RabbitMQ (RabbitTest.AnEraseOfTheLastExportedEventsStreamDoesNotStopTheExport):
// a stream erased (crypto-shredding) after its events were exported. The next start replays the
// events it checks against the topic, finds them erased (no payload, no id, no name: another key,
// so another partition), takes the same store for one restored from a backup, and stops for good.
TEST_F(KafkaTest, AnEraseOfAnExportedStreamDoesNotStopTheExport) {
  annal::test::Watchdog watchdog("kafka export after an erasure");
  engine::Options encrypted;
  encrypted.encryption = std::make_shared<annal::test::MasterKeys>();
  const auto open_encrypted = [&] {
    auto opened = Engine::open(dir_.path(), encrypted);
    EXPECT_TRUE(opened.ok()) << opened.status().to_string();
    engine_ = opened.ok() ? std::move(opened).value() : nullptr;
  };
  open_encrypted();
  ASSERT_NE(engine_, nullptr);
  auto exporter = std::make_shared<KafkaExport>(options());
  ASSERT_TRUE(engine_->add_projection("export_kafka", exporter, {}).ok());
  Receipt last;
  for (const std::string stream : {"keep", "keep", "forget-me", "forget-me"}) {
    const std::string payload = "payload of " + stream;
    const EventData event{.type = "Counted", .payload = std::as_bytes(std::span(payload))};
    last = engine_->append(stream, ExpectedVersion::any(), {&event, 1}).value();
  }
  wait_delivered(*exporter, last);
  ASSERT_TRUE(engine_->close().ok());
  exporter.reset();
  open_encrypted();
  ASSERT_NE(engine_, nullptr);
  const auto erased = engine_->erase_stream("forget-me");
  ASSERT_TRUE(erased.ok()) << erased.status().to_string();
  exporter = std::make_shared<KafkaExport>(options());
  const Status added = engine_->add_projection("export_kafka", exporter, {});
  ASSERT_TRUE(added.ok()) << added.to_string();
  const std::string payload = "after the erasure";
  const EventData event{.type = "Counted", .payload = std::as_bytes(std::span(payload))};
  const Receipt after = engine_->append("keep", ExpectedVersion::any(), {&event, 1}).value();
  ASSERT_TRUE(engine_->wait_durable(after, Engine::Clock::now() + std::chrono::minutes(1)).ok());
  EXPECT_TRUE(exporter->wait_delivered(after.last_sequence, std::chrono::steady_clock::now() + std::chrono::minutes(1)))
      << "delivered " << exporter->delivered() << " of " << after.last_sequence << "; " << exporter->health().to_string();
  EXPECT_TRUE(engine_->projection_status("export_kafka").value().error.ok())
      << engine_->projection_status("export_kafka").value().error.to_string();
  ASSERT_TRUE(engine_->close().ok());
}

// Events erased before they were exported are never exported: nothing of them is left to send.
// The topic holds the other stream's events, each once.
TEST_F(KafkaTest, AnEventErasedBeforeItIsExportedIsNotExported) {
  annal::test::Watchdog watchdog("kafka export of an erased stream");
  engine::Options encrypted;
  encrypted.encryption = std::make_shared<annal::test::MasterKeys>();
  auto opened = Engine::open(dir_.path(), encrypted);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  for (const std::string stream : {"keep", "forget-me", "keep", "forget-me", "keep"}) {
    const std::string payload = "payload of " + stream;
    const EventData event{.type = "Counted", .payload = std::as_bytes(std::span(payload))};
    ASSERT_TRUE(engine_->append(stream, ExpectedVersion::any(), {&event, 1}).ok());
  }
  const auto erased = engine_->erase_stream("forget-me");
  ASSERT_TRUE(erased.ok()) << erased.status().to_string();
  auto exporter = std::make_shared<KafkaExport>(options());
  ASSERT_TRUE(engine_->add_projection("export_kafka", exporter, {}).ok());
  const std::uint64_t last = engine_->last_sequence();
  EXPECT_TRUE(exporter->wait_delivered(last, std::chrono::steady_clock::now() + std::chrono::minutes(1)))
      << "delivered " << exporter->delivered() << " of " << last << "; " << exporter->health().to_string();
  std::map<std::string, int> by_key;
  for (const Record& record : topic()) ++by_key[record.key];
  EXPECT_EQ(by_key, (std::map<std::string, int>{{"keep", 3}}));
  ASSERT_TRUE(engine_->close().ok());
}

// An event of a stream erased while the exporter waits to hand it to the producer (its queue
// full: Kafka is down) is never produced: the exporter is told of the erasure
// (Projection::stream_erased) and drops the copy it holds, read from the ring before the erasure,
// though the room comes from an acknowledgement at once (Kafka back right after erase_stream
// returns, a producer that reconnects at once). What the producer queued already goes: librdkafka
// cannot take one record back (docs/kafka.md). Rounds, each with a stream of its own.
TEST_F(KafkaTest, AnEventErasedWhileWaitingForRoomIsNotExportedWhenRoomComesRightAfter) {
  annal::test::Watchdog watchdog("kafka export, an erasure while the producer is full, Kafka back at once");
  auto exporter = open_encrypted_with_full_producer();
  ASSERT_FALSE(HasFailure());
  constexpr int kRounds = 10;
  for (int round = 0; round < kRounds; ++round) {
    const std::string forget = "forget-me-" + std::to_string(round);
    for (int broker = 1; broker <= kBrokers; ++broker) rd_kafka_mock_broker_set_down(cluster_, broker);
    ASSERT_NO_FATAL_FAILURE(wait_applied(append_one("keep", "fills the producer's queue")));
    const Receipt secret = append_one(forget, "the secret");  // waits for room
    ASSERT_TRUE(engine_->wait_durable(secret, Engine::Clock::now() + std::chrono::minutes(1)).ok());
    const auto erased = engine_->erase_stream(forget);
    ASSERT_TRUE(erased.ok()) << erased.status().to_string();
    for (int broker = 1; broker <= kBrokers; ++broker) rd_kafka_mock_broker_set_up(cluster_, broker);
    wait_delivered(*exporter, append_one("keep", "after the erasure"));
  }
  std::map<std::string, int> by_key;
  for (const Record& record : topic()) ++by_key[record.key];
  EXPECT_EQ(by_key, (std::map<std::string, int>{{"keep", 1 + 2 * kRounds}}))
      << "a forget-me-N key above is an erased stream's event, produced after erase_stream returned";
  ASSERT_TRUE(engine_->close().ok());
}

// An event the exporter reads from the ring while its stream is being erased (Kafka comes back as
// erase_stream starts; the exporter, behind a full producer, catches up during the erasure's few
// milliseconds). It may be exported before the exporter is told (the erasure not done yet), with
// its stream's name; once the name is forgotten its copy in the ring has no name, and it must not
// be taken for an unnamed stream's event and exported under the stream's number with the erased
// payload: the engine tells the exporters before it forgets the name.
TEST_F(KafkaTest, AnEventReadWhileItsStreamIsErasedIsNeverExportedUnderTheStreamsNumber) {
  annal::test::Watchdog watchdog("kafka export, an event read while its stream is being erased, Kafka back");
  auto exporter = open_encrypted_with_full_producer();
  ASSERT_FALSE(HasFailure());
  constexpr int kRounds = 10;
  for (int round = 0; round < kRounds; ++round) {
    const std::string forget = "forget-me-" + std::to_string(round);
    for (int broker = 1; broker <= kBrokers; ++broker) rd_kafka_mock_broker_set_down(cluster_, broker);
    ASSERT_NO_FATAL_FAILURE(wait_applied(append_one("keep", "fills the producer's queue")));
    append_one("keep", "waits for room");
    const Receipt secret = append_one(forget, "the secret");  // waits in the ring
    ASSERT_TRUE(engine_->wait_durable(secret, Engine::Clock::now() + std::chrono::minutes(1)).ok());
    for (int broker = 1; broker <= kBrokers; ++broker) rd_kafka_mock_broker_set_up(cluster_, broker);
    const auto erased = engine_->erase_stream(forget);
    ASSERT_TRUE(erased.ok()) << erased.status().to_string();
    wait_delivered(*exporter, append_one("keep", "after the erasure"));
  }
  int kept = 0;
  for (const Record& record : topic()) {
    if (record.key == "keep") {
      ++kept;
    } else {
      EXPECT_EQ(record.key.rfind("forget-me-", 0), 0u) << "an erased stream's event exported under the stream's number, "
                                                       << record.key << ", sequence " << record.headers.at("annal.sequence");
    }
  }
  EXPECT_EQ(kept, 1 + 3 * kRounds);
  ASSERT_TRUE(engine_->close().ok());
}

// An erasure while the export catches up at its start: the engine tells the export (the stream's
// key not destroyed yet), and a journal reader that holds the stream's cipher still opens the
// stream's next event, with its payload but without its name (forgotten by then). The export must
// take it for its erased stream's, not for an unnamed stream's event that disagrees with the
// topic: no "restored from a backup" stop. The calls the engine makes are made here directly.
TEST_F(KafkaTest, AnEventOfAStreamErasedDuringTheCatchUpIsNotTakenForADivergence) {
  annal::test::Watchdog watchdog("kafka export, an erasure during the catch-up");
  engine::Options encrypted;
  encrypted.encryption = std::make_shared<annal::test::MasterKeys>();
  {
    auto opened = Engine::open(dir_.path(), encrypted);
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    engine_ = std::move(opened).value();
    KafkaExportOptions lingering = options();
    lingering.settings["linger.ms"] = "1000";  // the burst's records claim less delivered than they hold
    auto exporter = std::make_shared<KafkaExport>(lingering);
    ASSERT_TRUE(engine_->add_projection("export_kafka", exporter, {}).ok());
    append_one("keep", "kept");
    std::vector<std::string> payloads;
    std::vector<EventData> burst;
    for (int i = 0; i < 5; ++i) payloads.push_back("the secret " + std::to_string(i));
    for (const std::string& payload : payloads) {
      burst.push_back(EventData{.type = "Counted", .payload = std::as_bytes(std::span(payload))});
    }
    const auto last = engine_->append("forget-me", ExpectedVersion::any(), burst);
    ASSERT_TRUE(last.ok()) << last.status().to_string();
    wait_delivered(*exporter, last.value());
    ASSERT_TRUE(engine_->close().ok());
  }
  auto opened = Engine::open(dir_.path(), encrypted);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  const auto events = engine_->read_all(1, 100);
  ASSERT_TRUE(events.ok()) << events.status().to_string();
  const std::optional<std::uint64_t> forget = engine_->find_stream("forget-me");
  ASSERT_TRUE(forget);
  KafkaExport exporter(options());
  const auto resumed = exporter.resume_after();
  ASSERT_TRUE(resumed.ok() && resumed.value()) << resumed.status().to_string();
  const std::uint64_t from = *resumed.value() + 1;
  ASSERT_LT(from, events.value().back().header.sequence) << "the read-back left nothing to check";
  exporter.stream_erased(*forget, engine_->last_sequence() + 1);
  std::uint64_t applied = 0;
  for (const engine::Event& event : events.value()) {
    if (event.header.sequence < from) continue;
    engine::EventView view{.header = event.header, .payload = event.payload};
    if (view.header.stream_id == *forget) view.header.stream_name = {};  // read after the name went
    EXPECT_NO_THROW(exporter.apply(view)) << "event " << view.header.sequence;
    applied = view.header.sequence;
  }
  EXPECT_NO_THROW(exporter.end_of_batch(applied));
  EXPECT_TRUE(exporter.failure().ok()) << exporter.failure().to_string();
  exporter.stop_requested();
  ASSERT_TRUE(engine_->close().ok());
}

// A topic re-read after one of its streams was erased (erase_stream: a customer's data
// crypto-shredded). A re-read is what the import counts on being harmless: a second group from the
// start (as the tests above do), a crash before the commit, or the group's offsets expired in
// Kafka (offsets.retention.minutes) with auto.offset.reset=earliest. The messages of the erased
// stream come back with the ids they had. In the same run of the engine, the idempotency window
// still holds the ids, but the erased stream's name is forgotten, so the repeat looks like an
// append to another stream (engine.cc repeat_of: receipt.stream_id != the new stream id) and is
// refused as invalid_argument: the import takes a message it had imported for a bad one, stops
// there ("event ids of this append were used before") and stops there again on every start, a
// reopen of the store too (the window keeps the ids). With --skip-bad the import goes on, but
// reports messages it had imported as bad ones. Expected: a repeat of an erased event is a
// duplicate (nothing appended, the erased stream not brought back), and the import goes on.
TEST_F(KafkaTest, ImportReadingAgainAnErasedStreamsMessagesNeitherStopsNorBringsThemBack) {
  annal::test::Watchdog watchdog("kafka import after an erasure");
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(R"({"eventType": "OrderCreated", "orderId": "1"})" "\n"
                                         R"({"eventType": "OrderCreated", "orderId": "2"})" "\n"
                                         R"({"eventType": "OrderPaid", "orderId": "1"})" "\n",
                                         "-t event-stream"));
  engine::Options encrypted;
  encrypted.encryption = std::make_shared<annal::test::MasterKeys>();
  const auto open_encrypted = [&] {
    auto opened = Engine::open(dir_.path() + "/store", encrypted);
    EXPECT_TRUE(opened.ok()) << opened.status().to_string();
    engine_ = opened.ok() ? std::move(opened).value() : nullptr;
  };
  // Imports the whole topic as `group`: its progress once caught up or stopped.
  const auto import_as = [&](const std::string& group) {
    const KafkaImportOptions options{.brokers = rd_kafka_mock_cluster_bootstraps(cluster_),
                                     .topic = "event-stream",
                                     .group = group,
                                     .settings = {{"log_level", "0"}},
                                     .stream_field = "orderId",
                                     .stream_prefix = "order-"};
    auto import = KafkaImport::start(*engine_, options);
    EXPECT_TRUE(import.ok()) << import.status().to_string();
    if (!import.ok()) return KafkaImport::Progress{};
    EXPECT_TRUE(annal::test::eventually([&] {
      const auto p = import.value()->progress();
      return p.caught_up || !p.error.ok();
    }));
    (void)import.value()->stop();
    return import.value()->progress();
  };
  open_encrypted();
  ASSERT_NE(engine_, nullptr);
  const KafkaImport::Progress first = import_as("first");
  ASSERT_TRUE(first.error.ok()) << first.error.to_string();
  ASSERT_EQ(first.imported, 3u);
  ASSERT_TRUE(engine_->erase_stream("order-1").ok());

  // Read again in the same run of the engine.
  const KafkaImport::Progress again = import_as("second");
  EXPECT_TRUE(again.error.ok()) << "a re-read stops at a message it imported before: " << again.error.to_string();
  EXPECT_EQ(again.imported, 0u);
  EXPECT_FALSE(engine_->stream_version("order-1").has_value()) << "the erased stream is back";

  // Read again after a reopen.
  ASSERT_TRUE(engine_->close().ok());
  open_encrypted();
  ASSERT_NE(engine_, nullptr);
  const KafkaImport::Progress reopened = import_as("third");
  EXPECT_TRUE(reopened.error.ok()) << reopened.error.to_string();
  EXPECT_EQ(reopened.imported, 0u) << "messages imported before appended again";
  EXPECT_FALSE(engine_->stream_version("order-1").has_value())
      << "the erased stream is back, with " << (*engine_->stream_version("order-1") + 1) << " events";
  EXPECT_EQ(engine_->stream_version("order-2"), std::optional<std::uint64_t>(0));
  ASSERT_TRUE(engine_->close().ok());
}

// A message whose annal.id header is the nil UUID (all zero: a producer that fills the
// header whatever it has) is given that id, and the engine takes an all-zero id for "none" (no
// idempotency): read again (a second group, a crash before the commit), it is appended again.
// Any other message without a usable id gets one made of (cluster, topic, partition, offset).
TEST_F(KafkaTest, ImportGivesAMessageWithANilIdAnIdThatMakesItOnce) {
  annal::test::Watchdog watchdog("kafka import, a nil annal.id");
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(R"({"orderId": "5"})" "\n",
                                         "-t event-stream -H annal.type=OrderPaid "
                                         "-H annal.id=00000000-0000-0000-0000-000000000000"));
  auto opened = Engine::open(dir_.path() + "/store", {});
  ASSERT_TRUE(opened.ok());
  engine_ = std::move(opened).value();
  for (const std::string group : {"first", "second"}) {
    const KafkaImportOptions options{.brokers = rd_kafka_mock_cluster_bootstraps(cluster_),
                                     .topic = "event-stream",
                                     .group = group,
                                     .settings = {{"log_level", "0"}},
                                     .stream_field = "orderId",
                                     .stream_prefix = "order-"};
    auto import = KafkaImport::start(*engine_, options);
    ASSERT_TRUE(import.ok()) << import.status().to_string();
    EXPECT_TRUE(annal::test::eventually([&] {
      const auto p = import.value()->progress();
      return p.imported + p.duplicates == 1 || !p.error.ok();
    }));
    EXPECT_TRUE(import.value()->stop().ok());
  }
  EXPECT_EQ(engine_->stream_version("order-5"), std::optional<std::uint64_t>(0)) << "the message appended twice";
  ASSERT_TRUE(engine_->close().ok());
}

// Retention removed messages the group had not imported yet (the import stopped a while, 7 MB
// written meanwhile; the mock cluster keeps about 5 MB a partition): its offset is below where
// the partition starts now. auto.offset.reset=earliest (for a new group) moved it there, and the
// import went on from the new start, the removed messages never imported and nothing said. It
// must stop, naming the partition, the group's offset and the new start, before the first message
// after the gap. (Found by a review.)
TEST_F(KafkaTest, ImportStopsWhereRetentionRemovedMessagesItHadNotRead) {
  annal::test::Watchdog watchdog("kafka import, retention past the group's offset");
  expect_stopped_by_retention([] {});
}

// The group's offsets, read when the group gives the partitions, could not be read (the
// coordinator away, a rolling restart): the import took every message of those partitions
// unchecked, and the warning it showed went with the first message. It asks again now, before
// anything of such a partition is taken.
TEST_F(KafkaTest, ImportChecksRetentionWhenTheGroupsOffsetCouldNotBeReadAtFirst) {
  annal::test::Watchdog watchdog("kafka import, retention past a group's offset read late");
  expect_stopped_by_retention([&] {
    constexpr std::int16_t kOffsetFetch = 9;  // the OffsetFetch request's API key
    rd_kafka_mock_push_request_errors(cluster_, kOffsetFetch, 1, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
  });
}

// Kafka's zigzag varint of `v`, appended to `to`.
void put_varint(std::string& to, std::int64_t v) {
  auto z = static_cast<std::uint64_t>((v << 1) ^ (v >> 63));
  for (; z >= 0x80; z >>= 7) to.push_back(static_cast<char>((z & 0x7F) | 0x80));
  to.push_back(static_cast<char>(z));
}

// One record of `value` (no key, no headers) at offset delta `at`, as a RecordBatch v2 holds it.
std::string record_at(const std::string& value, int at) {
  std::string record;
  record.push_back(0);         // attributes
  put_varint(record, 0);       // timestamp delta
  put_varint(record, at);      // offset delta
  put_varint(record, -1);      // no key
  put_varint(record, static_cast<std::int64_t>(value.size()));
  record += value;
  put_varint(record, 0);       // no headers
  std::string records;
  put_varint(records, static_cast<std::int64_t>(record.size()));
  return records + record;
}

// Appends one record batch of `records` to partition 0 of `topic`, taking `offsets` offsets, with
// `attributes` (its compression). The tests make batches librdkafka and kcat do not write to the
// mock cluster (which writes no transaction markers): a Produce request (v3, RecordBatch v2) made
// here, sent to every broker, of which the partition's leader alone takes it. Whether exactly one
// took it.
bool produce_batch(const std::string& bootstraps, const std::string& topic, int offsets, std::uint16_t attributes,
                   const std::string& records) {
  std::string out;
  const auto put = [&](std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  // From attributes on: what the batch's CRC-32C covers.
  put(attributes, 2);
  put(static_cast<std::uint64_t>(offsets - 1), 4);            // last offset delta
  const auto now = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  std::chrono::system_clock::now().time_since_epoch()).count());
  put(now, 8);
  put(now, 8);
  put(~0ULL, 8);                                               // no producer id
  put(0xFFFF, 2);
  put(0xFFFFFFFF, 4);
  put(static_cast<std::uint64_t>(offsets), 4);                // record count: the offsets it takes
  out += records;
  const std::string covered = out;
  const std::uint32_t crc = journal::crc32c_extend(0, std::as_bytes(std::span(covered)));
  out.clear();
  put(0, 8);                                                   // base offset: the broker's to set
  put(covered.size() + 9, 4);                                  // batch length: from the epoch on
  put(0, 4);                                                   // partition leader epoch
  out.push_back(2);                                            // magic
  put(crc, 4);
  const std::string batch = out + covered;
  out.clear();
  put(0, 2);                                                   // Produce
  put(3, 2);                                                   // version 3
  put(1, 4);                                                   // correlation id
  put(4, 2);
  out += "test";                                               // client id
  put(0xFFFF, 2);                                              // no transactional id
  put(0xFFFF, 2);                                              // acks: all
  put(10'000, 4);                                              // timeout
  put(1, 4);
  put(topic.size(), 2);
  out += topic;
  put(1, 4);
  put(0, 4);                                                   // partition 0
  put(batch.size(), 4);
  out += batch;
  const std::string body = out;
  out.clear();
  put(body.size(), 4);
  const std::string request = out + body;
  int took = 0;
  std::stringstream brokers(bootstraps);
  for (std::string broker; std::getline(brokers, broker, ',');) {
    const std::size_t colon = broker.rfind(':');
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(std::stoi(broker.substr(colon + 1))));
    if (inet_pton(AF_INET, broker.substr(0, colon).c_str(), &address.sin_addr) != 1) return false;
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    std::string response;
    if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0 &&
        send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      // size, correlation id, topics 1, topic name, partitions 1, partition, error code, ...
      char chunk[512];
      for (ssize_t n; response.size() < 4 + 4 + 4 + 2 + topic.size() + 4 + 4 + 2 &&
                      (n = recv(fd, chunk, sizeof(chunk), 0)) > 0;) {
        response.append(chunk, static_cast<std::size_t>(n));
      }
    }
    close(fd);
    const std::size_t error_at = 4 + 4 + 4 + 2 + topic.size() + 4 + 4;
    if (response.size() < error_at + 2) return false;
    if (response[error_at] == 0 && response[error_at + 1] == 0) ++took;
  }
  return took == 1;
}

// A batch of `offsets` offsets holding one record, `value`, at delta `at`: the others are offsets
// no consumer is given, as a transaction's commit marker (after the records), an aborted
// transaction's records under read_committed or compaction (anywhere) leave them.
bool produce_with_unseen_offsets(const std::string& bootstraps, const std::string& topic, const std::string& value,
                                 int offsets, int at) {
  return produce_batch(bootstraps, topic, offsets, 0, record_at(value, at));
}

// Offsets the group's consumer is never given (a transaction's markers, an aborted transaction's
// records, compaction) are not retention: the import took the first message past such a gap for
// "retention removed N messages this import had not read" and stopped, at every start, for good,
// on any topic written by a transactional producer. It asks the partition's start now. And at
// the end of a partition it commits the end, past a trailing marker, as any consumer does.
TEST_F(KafkaTest, OffsetsNoConsumerIsGivenAreNotTakenForRetention) {
  annal::test::Watchdog watchdog("kafka import, offsets no consumer is given");
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(1, 10), "-t event-stream"));  // offsets 0 to 9
  auto opened = Engine::open(dir_.path() + "/store", {});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  const KafkaImportOptions options = seed_import();
  const auto import_until = [&](std::uint64_t imported) {
    auto import = KafkaImport::start(*engine_, options);
    ASSERT_TRUE(import.ok()) << import.status().to_string();
    ASSERT_TRUE(annal::test::eventually([&] {
      const auto p = import.value()->progress();
      return (p.caught_up && p.imported == imported) || !p.error.ok();
    })) << import.value()->progress().imported;
    EXPECT_TRUE(import.value()->progress().error.ok()) << import.value()->progress().error.to_string();
    EXPECT_TRUE(import.value()->stop().ok());
  };
  ASSERT_NO_FATAL_FAILURE(import_until(10));
  ASSERT_EQ(committed_offset("importers", "event-stream", 0), 10);
  const std::string bootstraps = rd_kafka_mock_cluster_bootstraps(cluster_);
  // Offset 10 is never given, 11 is order 11; then order 12 at 12.
  ASSERT_TRUE(produce_with_unseen_offsets(bootstraps, "event-stream", R"({"eventType": "OrderCreated", "orderId": "11"})", 2, 1));
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(12, 12), "-t event-stream"));
  // Order 13 at 13, and 14 never given: a trailing marker.
  ASSERT_TRUE(produce_with_unseen_offsets(bootstraps, "event-stream", R"({"eventType": "OrderCreated", "orderId": "13"})", 2, 0));
  ASSERT_NO_FATAL_FAILURE(import_until(3));
  for (const char* order : {"order-11", "order-12", "order-13"}) EXPECT_TRUE(engine_->find_stream(order)) << order;
  EXPECT_EQ(committed_offset("importers", "event-stream", 0), 15) << "the end, past offset 14, is committed";
  ASSERT_TRUE(engine_->close().ok());
}

// A commit refused for a rebalance was given up for every partition, and under the cooperative
// protocol a rebalance may leave this member all of them: their offsets were then committed only
// when new messages came, never for a partition that went quiet, and a crash read its batch again
// however long after (beyond the idempotency window, appended twice). Now the partitions still
// this member's are committed at the next chance.
TEST_F(KafkaTest, ACommitGivenUpForARebalanceIsMadeForThePartitionsItLeft) {
  annal::test::Watchdog watchdog("kafka import, a commit refused for a rebalance");
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(1, 5), "-t event-stream"));
  auto opened = Engine::open(dir_.path() + "/store", {});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  KafkaImportOptions options = seed_import();
  options.settings["partition.assignment.strategy"] = "cooperative-sticky";
  constexpr std::int16_t kOffsetCommit = 8;  // the OffsetCommit request's API key
  rd_kafka_mock_push_request_errors(cluster_, kOffsetCommit, 1, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS);
  auto import = KafkaImport::start(*engine_, options);
  ASSERT_TRUE(import.ok()) << import.status().to_string();
  ASSERT_TRUE(annal::test::eventually([&] {
    const auto p = import.value()->progress();
    return (p.caught_up && p.imported == 5) || !p.error.ok();
  }));
  EXPECT_TRUE(annal::test::eventually([&] { return committed_offset("importers", "event-stream", 0) == 5; }))
      << "the group's offset: " << committed_offset("importers", "event-stream", 0);
  EXPECT_TRUE(import.value()->stop().ok());
  ASSERT_TRUE(engine_->close().ok());
}

// A batch librdkafka cannot decompress (here gzip that is not gzip) is reported as a consumer
// error at every fetch of it: the import took it for an error to retry and stood there for ever,
// even with OnBad::stop. It stops there now whatever on_bad, naming the batch, until the group's
// offset is committed past it by hand; a group's offset inside the batch meets it again.
TEST_F(KafkaTest, ABatchThatCannotBeDecodedStopsTheImportUntilTheGroupsOffsetIsPastIt) {
  annal::test::Watchdog watchdog("kafka import, a batch that cannot be decoded");
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(1, 3), "-t event-stream"));  // offsets 0 to 2
  constexpr std::uint16_t kGzip = 1;
  ASSERT_TRUE(produce_batch(rd_kafka_mock_cluster_bootstraps(cluster_), "event-stream", 3, kGzip,
                            "not gzip, not anything"));  // offsets 3 to 5
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(7, 8), "-t event-stream"));  // offsets 6 and 7
  auto opened = Engine::open(dir_.path() + "/store", {});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  KafkaImportOptions options = seed_import();
  options.on_bad = KafkaImportOptions::OnBad::skip;
  // Imports until it stops; what it stopped for.
  const auto import_until_stopped = [&]() -> Status {
    auto import = KafkaImport::start(*engine_, options);
    if (!import.ok()) return import.status();
    EXPECT_TRUE(annal::test::eventually([&] { return !import.value()->progress().error.ok(); }));
    EXPECT_EQ(import.value()->progress().skipped, 0u);
    return import.value()->stop();
  };
  const Status stopped = import_until_stopped();
  EXPECT_EQ(stopped.code(), ErrorCode::corruption) << stopped.to_string();
  EXPECT_NE(stopped.message().find("partition 0 offset 3: "), std::string::npos) << stopped.to_string();
  EXPECT_NE(stopped.message().find("commit the group's offset past"), std::string::npos) << stopped.to_string();
  for (const char* order : {"order-1", "order-2", "order-3"}) EXPECT_TRUE(engine_->find_stream(order)) << order;
  EXPECT_FALSE(engine_->find_stream("order-7")) << "imported past a batch it could not read";
  EXPECT_EQ(committed_offset("importers", "event-stream", 0), 3) << "what came before the batch is committed";
  ASSERT_TRUE(commit_offset("importers", "event-stream", 0, 4));  // inside the batch: fetched whole
  const Status inside = import_until_stopped();
  EXPECT_NE(inside.message().find("the import stands at offset 4"), std::string::npos) << inside.to_string();
  EXPECT_FALSE(engine_->find_stream("order-7"));
  ASSERT_TRUE(commit_offset("importers", "event-stream", 0, 6));  // past it
  auto import = KafkaImport::start(*engine_, options);
  ASSERT_TRUE(import.ok()) << import.status().to_string();
  EXPECT_TRUE(annal::test::eventually([&] {
    const auto p = import.value()->progress();
    return !p.error.ok() || (p.caught_up && p.imported == 2);
  }));
  for (const char* order : {"order-7", "order-8"}) EXPECT_TRUE(engine_->find_stream(order)) << order;
  // A fetch answered OFFSET_OUT_OF_RANGE that was no retention takes librdkafka back to the
  // partition's start, below the batch: passed over already, it is sought past, not stopped at.
  constexpr std::int16_t kFetch = 1;  // the Fetch request's API key
  rd_kafka_mock_push_request_errors(cluster_, kFetch, 1, RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(9, 9), "-t event-stream"));  // offset 8
  EXPECT_TRUE(annal::test::eventually([&] {
    const auto p = import.value()->progress();
    return !p.error.ok() || (p.caught_up && p.imported == 3);
  }));
  EXPECT_TRUE(import.value()->stop().ok());
  EXPECT_TRUE(engine_->find_stream("order-9"));
  EXPECT_EQ(committed_offset("importers", "event-stream", 0), 9);
  for (const char* order : {"order-1", "order-2", "order-3", "order-7", "order-8", "order-9"}) {
    const auto events = engine_->read_stream(order, {});
    ASSERT_TRUE(events.ok()) << order;
    EXPECT_EQ(events.value().size(), 1u) << order;
  }
  ASSERT_TRUE(engine_->close().ok());
}

// librdkafka's fatal errors (here: the member fenced by another of its group.instance.id) come to
// a group's consumer from its poll, not from the error callback: the import showed them as an
// error being retried, and went on for ever with no partition, its stop() saying all was well.
TEST_F(KafkaTest, AFatalErrorStopsTheImport) {
  annal::test::Watchdog watchdog("kafka import, a fatal error");
  auto import = import_three_orders(seed_import());
  ASSERT_NE(import, nullptr);
  constexpr std::int16_t kHeartbeat = 12;  // the Heartbeat request's API key
  rd_kafka_mock_push_request_errors(cluster_, kHeartbeat, 1, RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID);
  EXPECT_TRUE(annal::test::eventually([&] { return !import->progress().error.ok(); }));
  const Status stopped = import->stop();
  EXPECT_NE(stopped.message().find("fatal error"), std::string::npos) << stopped.to_string();
  EXPECT_NE(stopped.message().find("fenced"), std::string::npos) << stopped.to_string();
  ASSERT_TRUE(engine_->close().ok());
}

// A commit no retry can make (the group's authorisation withdrawn) was tried again for ever, 5 s
// apart, nothing read meanwhile: now it stops the import, saying why.
TEST_F(KafkaTest, ACommitRefusedForGoodStopsTheImport) {
  annal::test::Watchdog watchdog("kafka import, a commit refused for good");
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(1, 3), "-t event-stream"));
  auto opened = Engine::open(dir_.path() + "/store", {});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  constexpr std::int16_t kOffsetCommit = 8;  // the OffsetCommit request's API key
  // One error a commit: the varargs form takes as many codes as its count says.
  const std::vector<rd_kafka_resp_err_t> refusals(50, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
  rd_kafka_mock_push_request_errors_array(cluster_, kOffsetCommit, refusals.size(), refusals.data());
  auto import = KafkaImport::start(*engine_, seed_import());
  ASSERT_TRUE(import.ok()) << import.status().to_string();
  EXPECT_TRUE(annal::test::eventually([&] { return !import.value()->progress().error.ok(); }));
  const Status stopped = import.value()->stop();
  EXPECT_NE(stopped.message().find("committing the group's offsets"), std::string::npos) << stopped.to_string();
  EXPECT_NE(stopped.message().find("authorization"), std::string::npos) << stopped.to_string();
  EXPECT_EQ(import.value()->progress().imported, 3u);
  ASSERT_TRUE(engine_->close().ok());
}

// The topic deleted under a running import (the mock cluster answers "unknown topic or partition"
// for it): the import stops, saying so, and its stop and destructor return. librdkafka 2.0.2
// never returns from destroying such a consumer (issue 4187): the import's stop() waited for ever.
// The error says what to do if the topic is made again.
TEST_F(KafkaTest, ADeletedTopicStopsTheImportAndItsStopReturns) {
  annal::test::Watchdog watchdog("kafka import, its topic deleted");
  KafkaImportOptions options = seed_import();
  options.settings["topic.metadata.refresh.interval.ms"] = "200";  // the deletion seen soon
  auto import = import_three_orders(options);
  ASSERT_NE(import, nullptr);
  rd_kafka_mock_topic_set_error(cluster_, "event-stream", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  EXPECT_TRUE(annal::test::eventually([&] { return !import->progress().error.ok(); }));
  const Status stopped = import->stop();
  EXPECT_EQ(stopped.code(), ErrorCode::not_found) << stopped.to_string();
  EXPECT_NE(stopped.message().find("Unknown topic or partition"), std::string::npos) << stopped.to_string();
  EXPECT_NE(stopped.message().find("with a new group"), std::string::npos) << stopped.to_string();
  import.reset();
  expect_orders_once(3);
  ASSERT_TRUE(engine_->close().ok());
}

// The same with offsets still to commit: the commit, answered "unknown topic or partition", was
// retried for ever, nothing polled meanwhile to hear of the deletion. A commit so answered while
// the topic is there is retried (a coordinator whose metadata lags); once the topic's metadata
// says it does not exist, the import stops.
TEST_F(KafkaTest, ADeletedTopicStopsTheImportEvenWithACommitToMake) {
  annal::test::Watchdog watchdog("kafka import, its topic deleted with a commit to make");
  auto import = import_three_orders(seed_import());
  ASSERT_NE(import, nullptr);
  constexpr std::int16_t kOffsetCommit = 8;  // the OffsetCommit request's API key
  const std::vector<rd_kafka_resp_err_t> refusals(1000, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  rd_kafka_mock_push_request_errors_array(cluster_, kOffsetCommit, refusals.size(), refusals.data());
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(4, 5), "-t event-stream"));
  ASSERT_TRUE(annal::test::eventually([&] {
    const auto p = import->progress();
    return p.retrying.message().find("committing the group's offsets") != std::string::npos || !p.error.ok();
  }));
  EXPECT_TRUE(import->progress().error.ok()) << import->progress().error.to_string();
  rd_kafka_mock_topic_set_error(cluster_, "event-stream", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  EXPECT_TRUE(annal::test::eventually([&] { return !import->progress().error.ok(); }));
  const Status stopped = import->stop();
  EXPECT_EQ(stopped.code(), ErrorCode::not_found) << stopped.to_string();
  EXPECT_NE(stopped.message().find("does not exist"), std::string::npos) << stopped.to_string();
  EXPECT_NE(stopped.message().find("with a new group"), std::string::npos) << stopped.to_string();
  import.reset();
  expect_orders_once(5);
  ASSERT_TRUE(engine_->close().ok());
}

// auto.offset.reset=earliest takes a running import back to a partition's start when a fetch is
// answered OFFSET_OUT_OF_RANGE that was no retention (a replica behind): every message the
// idempotency window (100 here) no longer held was appended again. Now those below where the
// partition stood are passed over.
TEST_F(KafkaTest, AnOffsetOutOfRangeWhileImportingRepeatsNoMessage) {
  annal::test::Watchdog watchdog("kafka import, an offset out of range while running");
  rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(1, 300), "-t event-stream"));
  auto opened = Engine::open(dir_.path() + "/store", {.idempotency_window = 100});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  engine_ = std::move(opened).value();
  KafkaImportOptions options = seed_import();
  options.batch_max = 50;
  auto import = KafkaImport::start(*engine_, options);
  ASSERT_TRUE(import.ok()) << import.status().to_string();
  const auto imported = [&](std::uint64_t count) {
    return annal::test::eventually([&] {
      const auto p = import.value()->progress();
      return (p.caught_up && p.imported + p.duplicates >= count) || !p.error.ok();
    });
  };
  ASSERT_TRUE(imported(300));
  constexpr std::int16_t kFetch = 1;  // the Fetch request's API key
  rd_kafka_mock_push_request_errors(cluster_, kFetch, 1, RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE);
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(301, 301), "-t event-stream"));
  ASSERT_TRUE(imported(301));
  EXPECT_TRUE(import.value()->progress().error.ok()) << import.value()->progress().error.to_string();
  EXPECT_TRUE(import.value()->stop().ok());
  ASSERT_NO_FATAL_FAILURE(expect_orders_once(301));
  ASSERT_TRUE(engine_->close().ok());
}

// The import's "read to its end" marks (Consumer::at_end) outlive a rebalance. An import
// that had read a partition to its end, lost it to a second member of its group and got it back
// with messages that member left unread (not committed: it stopped, was killed, was slow), still
// takes that partition for read to its end: Progress::caught_up says true while those messages
// are not imported, and 'annal import kafka --until-caught-up' ends there, exit 0, leaving them
// out. Here the partition's leader is down when it comes back, so the false claim lasts; with
// the leader up it lasts until the first fetch of that partition answers (a race the tool's
// 200 ms poll can lose).
TEST_F(KafkaTest, ImportIsNotCaughtUpWhenAPartitionComesBackWithMessagesUnread) {
  annal::test::Watchdog watchdog("kafka import, a partition given back after a rebalance");
  rd_kafka_mock_topic_create(cluster_, "shared", 2, kBrokers);
  // Partition 0 led by broker 2, partition 1 by broker 3; the group's coordinator is broker 1, so
  // a partition's leader can go down while the group goes on.
  rd_kafka_mock_partition_set_leader(cluster_, "shared", 0, 2);
  rd_kafka_mock_partition_set_leader(cluster_, "shared", 1, 3);
  rd_kafka_mock_coordinator_set(cluster_, "group", "importers", 1);
  for (int partition = 0; partition < 2; ++partition) {
    ASSERT_NO_FATAL_FAILURE(send_with_kcat(R"({"eventType": "OrderCreated", "orderId": ")" + std::to_string(partition) + "\"}\n",
                                           "-t shared -p " + std::to_string(partition)));
  }
  auto opened = Engine::open(dir_.path() + "/store", {});
  ASSERT_TRUE(opened.ok());
  engine_ = std::move(opened).value();
  auto import = KafkaImport::start(*engine_, KafkaImportOptions{.brokers = rd_kafka_mock_cluster_bootstraps(cluster_),
                                                                .topic = "shared",
                                                                .group = "importers",
                                                                .settings = {{"log_level", "0"},
                                                                             {"session.timeout.ms", "6000"},
                                                                             {"heartbeat.interval.ms", "500"}},
                                                                .stream_field = "orderId",
                                                                .stream_prefix = "order-"});
  ASSERT_TRUE(import.ok()) << import.status().to_string();
  ASSERT_TRUE(annal::test::eventually([&] {
    const auto p = import.value()->progress();
    return p.caught_up && p.imported == 2;
  }));

  // A second member of the group (another import, here a plain consumer) takes a partition,
  // and never reads what comes to it.
  std::string error(512, '\0');
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [name, value] : std::map<std::string, std::string>{{"bootstrap.servers", rd_kafka_mock_cluster_bootstraps(cluster_)},
                                                                      {"group.id", "importers"},
                                                                      {"enable.auto.commit", "false"},
                                                                      {"session.timeout.ms", "6000"},
                                                                      {"heartbeat.interval.ms", "500"},
                                                                      {"log_level", "0"}}) {
    ASSERT_EQ(rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error.data(), error.size()), RD_KAFKA_CONF_OK);
  }
  rd_kafka_t* other = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error.data(), error.size());
  ASSERT_NE(other, nullptr) << error;
  struct Closer {
    rd_kafka_t* consumer;
    ~Closer() {
      if (consumer == nullptr) return;
      (void)rd_kafka_consumer_close(consumer);
      rd_kafka_destroy(consumer);
    }
  } closer{other};
  rd_kafka_poll_set_consumer(other);
  {
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, "shared", RD_KAFKA_PARTITION_UA);
    ASSERT_EQ(rd_kafka_subscribe(other, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(topics);
  }
  int taken = -1;
  ASSERT_TRUE(annal::test::eventually([&] {
    if (rd_kafka_message_t* polled = rd_kafka_consumer_poll(other, 10)) rd_kafka_message_destroy(polled);
    rd_kafka_topic_partition_list_t* assigned = nullptr;
    if (rd_kafka_assignment(other, &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
    if (assigned->cnt > 0) {
      taken = assigned->elems[0].partition;
      (void)rd_kafka_pause_partitions(other, assigned);
    }
    rd_kafka_topic_partition_list_destroy(assigned);
    return taken >= 0;
  }));
  // Three messages to the partition the other member holds: it leaves them unread.
  ASSERT_NO_FATAL_FAILURE(send_with_kcat(R"({"eventType": "OrderPaid", "orderId": "a"})" "\n"
                                         R"({"eventType": "OrderPaid", "orderId": "b"})" "\n"
                                         R"({"eventType": "OrderPaid", "orderId": "c"})" "\n",
                                         "-t shared -p " + std::to_string(taken)));
  const int leader = taken == 0 ? 2 : 3;
  rd_kafka_mock_broker_set_down(cluster_, leader);
  // It leaves the group: the import is given the partition back, three messages behind.
  (void)rd_kafka_consumer_close(other);
  rd_kafka_destroy(other);
  closer.consumer = nullptr;

  // Those three are not imported (their leader is down): the import is not caught up.
  EXPECT_TRUE(annal::test::eventually([&] { return !import.value()->progress().caught_up; }))
      << "caught_up with partition " << taken << "'s three messages unread; imported "
      << import.value()->progress().imported << " of 5";
  rd_kafka_mock_broker_set_up(cluster_, leader);
  EXPECT_TRUE(annal::test::eventually([&] {
    const auto p = import.value()->progress();
    return p.caught_up && p.imported == 5;
  }));
  EXPECT_TRUE(import.value()->stop().ok());
  ASSERT_TRUE(engine_->close().ok());
}

}  // namespace
}  // namespace annal::kafka
