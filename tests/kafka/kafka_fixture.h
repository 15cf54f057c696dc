// The Kafka tests' fixture: librdkafka's mock cluster (a Kafka protocol server on loopback, in
// this process, three brokers, topic "orders" of four partitions), an engine exporting to it, and
// kcat, a Kafka client that is not ours, to write messages and read the topic back.
#pragma once

#include "annal/kafka/kafka_export.h"
#include "annal/kafka/kafka_import.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "counted_events.h"
#include "eventually.h"
#include "master_keys.h"
#include "run_program.h"
#include "served.h"
#include "spawned_tool.h"
#include "temp_directory.h"
#include "watchdog.h"

namespace annal::kafka {

using engine::Engine;
using engine::EventData;
using engine::ExpectedVersion;
using engine::Receipt;

constexpr int kBrokers = 3;
constexpr int kPartitions = 4;

// A record as kcat shows it.
struct Record {
  int partition = 0;
  std::string key;
  std::map<std::string, std::string> headers;
};

class KafkaTest : public ::testing::Test {
 protected:
  KafkaTest() {
    char error[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    // The handle only hosts the cluster: it connects nowhere.
    rd_kafka_conf_set(conf, "log_level", "0", error, sizeof(error));
    host_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error)));
    cluster_ = rd_kafka_mock_cluster_new(host_.get(), kBrokers);
    rd_kafka_mock_topic_create(cluster_, "orders", kPartitions, kBrokers);
  }
  ~KafkaTest() override { rd_kafka_mock_cluster_destroy(cluster_); }

  KafkaExportOptions options() const {
    return KafkaExportOptions{.brokers = rd_kafka_mock_cluster_bootstraps(cluster_),
                              .topic = "orders",
                              .source = "store-a",
                              .settings = {{"log_level", "0"}, {"linger.ms", "5"}}};
  }

  std::shared_ptr<KafkaExport> open_with_export(const std::map<std::string, std::string>& settings = {}) {
    auto opened = Engine::open(dir_.path(), {});
    EXPECT_TRUE(opened.ok()) << opened.status().to_string();
    if (!opened.ok()) return nullptr;
    engine_ = std::move(opened).value();
    KafkaExportOptions with = options();
    with.settings.insert(settings.begin(), settings.end());
    auto exporter = std::make_shared<KafkaExport>(with);
    const Status added = engine_->add_projection("export_kafka", exporter, {});
    EXPECT_TRUE(added.ok()) << added.to_string();
    return exporter;
  }

  // Appends `count` events with an export, waits until Kafka has them all, and closes the engine:
  // a topic that holds them, for a test of what a later start does.
  void export_and_close(int count) {
    auto exporter = open_with_export();
    ASSERT_FALSE(HasFailure());
    wait_delivered(*exporter, append(count));
    ASSERT_TRUE(engine_->close().ok());
    engine_.reset();
  }

  // An encrypted store (erase_stream) exporting through a producer that holds one record and
  // reconnects at once, its first event ("keep") delivered.
  std::shared_ptr<KafkaExport> open_encrypted_with_full_producer() {
    engine::Options encrypted;
    encrypted.encryption = std::make_shared<annal::test::MasterKeys>();
    auto opened = Engine::open(dir_.path(), encrypted);
    EXPECT_TRUE(opened.ok()) << opened.status().to_string();
    if (!opened.ok()) return nullptr;
    engine_ = std::move(opened).value();
    KafkaExportOptions full = options();
    full.settings["queue.buffering.max.messages"] = "1";
    full.settings["reconnect.backoff.ms"] = "1";
    full.settings["reconnect.backoff.max.ms"] = "5";
    full.settings["linger.ms"] = "0";
    auto exporter = std::make_shared<KafkaExport>(full);
    const Status added = engine_->add_projection("export_kafka", exporter, {});
    EXPECT_TRUE(added.ok()) << added.to_string();
    if (!added.ok()) return nullptr;
    wait_delivered(*exporter, append_one("keep", "kept"));
    return exporter;
  }

  // One event of `payload` appended to `stream`.
  Receipt append_one(const std::string& stream, const std::string& payload) {
    const EventData event{.type = "Counted", .payload = std::as_bytes(std::span(payload))};
    auto appended = engine_->append(stream, ExpectedVersion::any(), {&event, 1});
    EXPECT_TRUE(appended.ok()) << appended.status().to_string();
    return appended.ok() ? appended.value() : Receipt{};
  }

  // Until the export has applied `receipt`'s events (queued them, or waits for room after them).
  void wait_applied(const Receipt& receipt) {
    ASSERT_TRUE(annal::test::eventually([&] {
      const auto status = engine_->projection_status("export_kafka");
      return status.ok() && status.value().applied >= receipt.last_sequence;
    }));
  }

  // Appends `count` events over 13 streams; the last receipt.
  Receipt append(int count) { return annal::test::append_counted(*engine_, count, appended_); }

  void wait_delivered(const KafkaExport& exporter, const Receipt& receipt) {
    ASSERT_TRUE(engine_->wait_durable(receipt, Engine::Clock::now() + std::chrono::minutes(2)).ok());
    EXPECT_TRUE(exporter.wait_delivered(receipt.last_sequence, std::chrono::steady_clock::now() + std::chrono::minutes(2)))
        << "delivered " << exporter.delivered() << ", waiting for " << receipt.last_sequence << "; "
        << exporter.health().to_string();
  }

  // Sends `lines` as messages, one a line, with kcat (a producer that is not ours): `kcat_args`
  // names the topic and what else (-p, -k, -H).
  void send_with_kcat(const std::string& lines, const std::string& kcat_args) {
    const std::string file = dir_.path() + "/messages";
    std::FILE* out = std::fopen(file.c_str(), "w");
    ASSERT_NE(out, nullptr);
    std::fputs(lines.c_str(), out);
    std::fclose(out);
    const annal::test::ProgramRun sent = annal::test::run_program(
        std::string(ANNAL_KCAT) + " -P -b " + rd_kafka_mock_cluster_bootstraps(cluster_) + " " + kcat_args + " -l " + file);
    ASSERT_EQ(sent.exit_code, 0) << sent.output;
  }

  // The seed's order messages, {"eventType": "OrderCreated", "orderId": "<n>"} for orders first to
  // last, one a line, for send_with_kcat.
  static std::string seed_orders(int first, int last) {
    std::string lines;
    for (int order = first; order <= last; ++order) {
      lines += R"({"eventType": "OrderCreated", "orderId": ")" + std::to_string(order) + "\"}\n";
    }
    return lines;
  }
  // Imports 50 orders, then 700 messages of 10 kB that make the mock cluster's retention remove
  // the first segments, offsets 50 on among them; imports again (`before_start` first): the import
  // must stop there, naming the offsets retention removed, with nothing after them imported.
  void expect_stopped_by_retention(const std::function<void()>& before_start) {
    rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
    ASSERT_NO_FATAL_FAILURE(send_with_kcat(seed_orders(1, 50), "-t event-stream"));
    auto opened = Engine::open(dir_.path() + "/store", {});
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    engine_ = std::move(opened).value();
    const KafkaImportOptions options = seed_import();
    {
      auto import = KafkaImport::start(*engine_, options);
      ASSERT_TRUE(import.ok()) << import.status().to_string();
      ASSERT_TRUE(annal::test::eventually([&] {
        const auto p = import.value()->progress();
        return (p.caught_up && p.imported == 50) || !p.error.ok();
      }));
      ASSERT_TRUE(import.value()->stop().ok());  // the group's offset: 50
    }
    std::string filler;
    const std::string pad(10'000, 'x');
    for (int i = 0; i < 700; ++i) filler += R"({"eventType": "OrderCreated", "orderId": "late", "pad": ")" + pad + "\"}\n";
    ASSERT_NO_FATAL_FAILURE(send_with_kcat(filler, "-t event-stream"));
    before_start();
    auto import = KafkaImport::start(*engine_, options);
    ASSERT_TRUE(import.ok()) << import.status().to_string();
    EXPECT_TRUE(annal::test::eventually([&] {
      const auto p = import.value()->progress();
      return !p.error.ok() || p.imported > 0;
    }, std::chrono::minutes(2)));
    const Status error = import.value()->progress().error;
    EXPECT_NE(error.message().find("partition 0: the import of group importers stands at offset 50"), std::string::npos)
        << error.to_string() << "; imported " << import.value()->progress().imported;
    EXPECT_NE(error.message().find("retention removed"), std::string::npos) << error.to_string();
    EXPECT_EQ(import.value()->progress().imported, 0u);
    EXPECT_FALSE(engine_->find_stream("order-late")) << "messages after the gap were imported";
    (void)import.value()->stop();
    ASSERT_TRUE(engine_->close().ok());
  }
  // Each of the seed's orders 1 to `last` (streams order-<n>) holds one event: none missing, none
  // appended twice.
  void expect_orders_once(int last) {
    int twice = 0;
    for (int order = 1; order <= last; ++order) {
      const auto events = engine_->read_stream("order-" + std::to_string(order), {});
      ASSERT_TRUE(events.ok());
      EXPECT_EQ(events.value().size(), 1u) << "order-" << order;
      twice += events.value().size() > 1 ? 1 : 0;
    }
    EXPECT_EQ(twice, 0);
  }
  // Topic event-stream made with the seed's orders 1 to 3, a store opened, and an import of them
  // with `options` started and caught up; null after a failure.
  std::unique_ptr<KafkaImport> import_three_orders(const KafkaImportOptions& options) {
    rd_kafka_mock_topic_create(cluster_, "event-stream", 1, kBrokers);
    send_with_kcat(seed_orders(1, 3), "-t event-stream");
    auto opened = Engine::open(dir_.path() + "/store", {});
    EXPECT_TRUE(opened.ok()) << opened.status().to_string();
    if (HasFailure() || !opened.ok()) return nullptr;
    engine_ = std::move(opened).value();
    auto import = KafkaImport::start(*engine_, options);
    EXPECT_TRUE(import.ok()) << import.status().to_string();
    if (!import.ok()) return nullptr;
    EXPECT_TRUE(annal::test::eventually([&] {
      const auto p = import.value()->progress();
      return (p.caught_up && p.imported == 3) || !p.error.ok();
    }));
    EXPECT_TRUE(import.value()->progress().error.ok()) << import.value()->progress().error.to_string();
    return HasFailure() ? nullptr : std::move(import).value();
  }
  // An import of topic event-stream's seed orders (streams order-<orderId>) by group importers.
  KafkaImportOptions seed_import() const {
    KafkaImportOptions options;
    options.brokers = rd_kafka_mock_cluster_bootstraps(cluster_);
    options.topic = "event-stream";
    options.group = "importers";
    options.settings = {{"log_level", "0"}, {"session.timeout.ms", "6000"}};
    options.stream_field = "orderId";
    options.stream_prefix = "order-";
    return options;
  }

  // The offset `group` has committed for partition `partition` of `topic`, asked by a handle of
  // the group that does not join it; -1 if none or not known.
  std::int64_t committed_offset(const std::string& group, const std::string& topic, int partition) const {
    const auto handle = group_handle(group);
    const auto list = one_partition(topic, partition);
    if (handle == nullptr || rd_kafka_committed(handle.get(), list.get(), 5000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        list->elems[0].err != 0) {
      return -1;
    }
    return list->elems[0].offset;
  }

  // Commits `offset` for `group`'s partition `partition` of `topic`, as a user does by hand
  // (kafka-consumer-groups --reset-offsets) while none of the group runs. The mock cluster takes
  // commits from members only: the handle joins the group, commits once it is given the
  // partition, and leaves.
  bool commit_offset(const std::string& group, const std::string& topic, int partition, std::int64_t offset) const {
    const auto handle = group_handle(group);
    if (handle == nullptr) return false;
    const auto list = one_partition(topic, partition);
    if (rd_kafka_subscribe(handle.get(), list.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
    const bool given = annal::test::eventually([&] {
      if (rd_kafka_message_t* message = rd_kafka_consumer_poll(handle.get(), 100)) rd_kafka_message_destroy(message);
      rd_kafka_topic_partition_list_t* assigned = nullptr;
      if (rd_kafka_assignment(handle.get(), &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
      const bool has = rd_kafka_topic_partition_list_find(assigned, topic.c_str(), partition) != nullptr;
      rd_kafka_topic_partition_list_destroy(assigned);
      return has;
    });
    list->elems[0].offset = offset;
    const bool committed = given && rd_kafka_commit(handle.get(), list.get(), 0) == RD_KAFKA_RESP_ERR_NO_ERROR;
    return rd_kafka_consumer_close(handle.get()) == RD_KAFKA_RESP_ERR_NO_ERROR && committed;
  }

  // A consumer handle of `group` on the mock cluster, which commits nothing by itself.
  std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> group_handle(const std::string& group) const {
    char error[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(cluster_), error, sizeof(error));
    rd_kafka_conf_set(conf, "group.id", group.c_str(), error, sizeof(error));
    rd_kafka_conf_set(conf, "log_level", "0", error, sizeof(error));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", error, sizeof(error));
    // The mock group waits for its members to rejoin up to the last joiner's session timeout.
    rd_kafka_conf_set(conf, "session.timeout.ms", "6000", error, sizeof(error));
    return {rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof(error)), rd_kafka_destroy};
  }

  static std::unique_ptr<rd_kafka_topic_partition_list_t, void (*)(rd_kafka_topic_partition_list_t*)> one_partition(
      const std::string& topic, int partition) {
    std::unique_ptr<rd_kafka_topic_partition_list_t, void (*)(rd_kafka_topic_partition_list_t*)> list(
        rd_kafka_topic_partition_list_new(1), rd_kafka_topic_partition_list_destroy);
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition);
    return list;
  }

  // Partition 3 behind a slow leader: this source's `ours` events exported, then `foreign` records
  // of another source after them there, and broker 3, its leader, answering each request half a
  // second late, so that a test can act between the read-back's fetches.
  void slow_partition_3_after(int ours, int foreign) {
    ASSERT_NO_FATAL_FAILURE(export_and_close(ours));
    std::string lines;
    for (int i = 0; i < foreign; ++i) lines += "{\"other\":" + std::to_string(i) + "}\n";
    ASSERT_NO_FATAL_FAILURE(send_with_kcat(lines, "-t orders -p 3 -k other -H annal.source=store-b"));
    rd_kafka_mock_partition_set_leader(cluster_, "orders", 3, 3);
    rd_kafka_mock_broker_set_rtt(cluster_, 3, 500);
  }

  // `annal export kafka` of this store to topic orders as store-a, with librdkafka's debug log of
  // `debug` on its stderr (a test times its faults from it), then `more` arguments.
  std::unique_ptr<annal::test::SpawnedTool> export_tool(const std::string& debug, std::vector<std::string> more = {}) {
    std::vector<std::string> args{"export", "kafka", dir_.path(), "--brokers", rd_kafka_mock_cluster_bootstraps(cluster_),
                                  "--topic", "orders", "--source", "store-a", "--set", "log_level=7", "--set",
                                  "debug=" + debug, "--start-timeout", "3600"};
    args.insert(args.end(), more.begin(), more.end());
    return std::make_unique<annal::test::SpawnedTool>(ANNAL_CLI, args);
  }
  // The end of what a tool printed, for a failure's message.
  static std::string last_printed(const annal::test::SpawnedTool& child) {
    const std::string& printed = child.printed();
    return printed.substr(printed.size() - std::min<std::size_t>(printed.size(), 1500));
  }

  // Exports 200 events and closes; then writes, with kcat, a record of this source in partition 0,
  // 40 sequences ahead of the store, as an old timeline leaves one for a restored store: claiming
  // everything up to its own sequence exported (annal.delivered), or nothing. Its sequence.
  std::uint64_t export_then_write_ghost(bool claims_all_delivered) {
    auto exporter = open_with_export();
    if (HasFailure()) return 0;
    const Receipt first = append(200);
    wait_delivered(*exporter, first);
    EXPECT_TRUE(engine_->close().ok());
    engine_.reset();
    const std::uint64_t ghost = first.last_sequence + 40;
    send_with_kcat("{}\n", "-t orders -p 0 -k ghost -H annal.source=store-a -H annal.sequence=" + std::to_string(ghost) +
                               " -H annal.delivered=" + (claims_all_delivered ? std::to_string(ghost) : "1") +
                               " -H annal.partitions=4");
    return ghost;
  }

  // The topic as kcat reads it, every partition from the beginning to its end.
  std::vector<Record> topic() {
    const annal::test::ProgramRun ran = annal::test::run_program(
        std::string(ANNAL_KCAT) + " -C -b " + rd_kafka_mock_cluster_bootstraps(cluster_) +
        " -t orders -o beginning -e -q -f '%p %k %h\\n'");
    EXPECT_EQ(ran.exit_code, 0) << ran.output;
    std::vector<Record> records;
    std::istringstream lines(ran.output);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream fields(line);
      Record record;
      std::string headers;
      fields >> record.partition >> record.key >> headers;
      std::istringstream pairs(headers);
      for (std::string pair; std::getline(pairs, pair, ',');) {
        const auto equals = pair.find('=');
        if (equals != std::string::npos) record.headers[pair.substr(0, equals)] = pair.substr(equals + 1);
      }
      records.push_back(std::move(record));
    }
    return records;
  }

  // The topic holds each of the store's events once (the journal says which: a new stream's name
  // takes a sequence too), each stream's in order, every record on its key's partition.
  void expect_exported_once() {
    std::map<std::uint64_t, std::string> events;  // sequence -> stream
    for (std::uint64_t from = 1;;) {
      auto read = engine_->read_all(from, 1000);
      ASSERT_TRUE(read.ok()) << read.status().to_string();
      if (read.value().empty()) break;
      for (const engine::Event& event : read.value()) events[event.header.sequence] = std::string(event.header.stream_name);
      from = read.value().back().header.sequence + 1;
    }
    ASSERT_EQ(events.size(), static_cast<std::size_t>(appended_));
    const std::vector<Record> records = topic();
    std::map<std::uint64_t, int> times;
    std::map<std::string, std::uint64_t> stream_last;
    std::map<std::string, std::set<int>> partitions_of;
    std::size_t ours = 0;
    for (const Record& record : records) {
      if (record.headers.at("annal.source") != "store-a") continue;  // another store's, in a shared topic
      ++ours;
      const std::uint64_t sequence = std::stoull(record.headers.at("annal.sequence"));
      ++times[sequence];
      EXPECT_EQ(events[sequence], record.key) << "event " << sequence;
      EXPECT_EQ(record.headers.at("annal.type"), "Counted");
      EXPECT_GT(sequence, stream_last[record.key]) << record.key << " out of order";
      stream_last[record.key] = sequence;
      partitions_of[record.key].insert(record.partition);
    }
    EXPECT_EQ(ours, events.size());
    for (const auto& [sequence, stream] : events) EXPECT_EQ(times[sequence], 1) << "event " << sequence << " of " << stream;
    for (const auto& [key, partitions] : partitions_of) EXPECT_EQ(partitions.size(), 1u) << key;
  }

  annal::test::TempDirectory dir_;
  std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> host_{nullptr, rd_kafka_destroy};
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
  std::unique_ptr<Engine> engine_;
  int appended_ = 0;
};

}  // namespace annal::kafka
