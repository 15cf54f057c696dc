#include "segment_chainer.h"

#include <cstdio>

#include "annal/base/thread_role.h"
#include "chain_file.h"

namespace annal::journal {

Result<std::unique_ptr<SegmentChainer>> SegmentChainer::open(IoBackend& io, std::string directory,
                                                             const std::vector<SegmentInfo>& segments,
                                                             std::shared_ptr<const ChainKey> key, bool tag_untagged,
                                                             bool direct) {
  auto chain = read_chain_file(io, directory);
  if (!chain.ok()) return chain.status();
  // The sealed segments: all but the tail, each holding records.
  const std::size_t sealed = segments.empty() ? 0 : segments.size() - 1;
  const std::uint64_t first_base = segments.empty() ? UINT64_MAX : segments.front().base;
  std::vector<ChainEntry> kept;
  bool dropped = chain.value().damaged_at.has_value();
  for (const ChainEntry& entry : chain.value().entries) {
    if (!kept.empty() && !entry_follows(entry, kept.back().last, first_base)) {
      dropped = true;
      break;
    }
    if (entry.last < first_base) {  // its segment was removed by retention
      kept.push_back(entry);
      continue;
    }
    std::size_t i = 0;
    while (i < sealed && segments[i].base != entry.base) ++i;
    if (i == sealed || segments[i].end_sequence != entry.last + 1) {
      dropped = true;
      break;
    }
    kept.push_back(entry);
  }
  bool tagged = false;
  if (key && tag_untagged) {
    for (ChainEntry& entry : kept) {
      if (entry.key_version != 0) continue;
      entry.key_version = key->version;
      entry.tag = chain_entry_tag(entry, key->key);
      tagged = true;
    }
  }
  if (dropped) {
    std::fprintf(stderr, "annal: journal %s: CHAIN kept %zu of its entries; the segments after them are chained again\n",
                 directory.c_str(), kept.size());
  }
  if (dropped || tagged) {
    if (Status rewritten = rewrite_chain_file(io, directory, kept); !rewritten.ok()) {
      return Status(rewritten.code(), "journal " + directory + ": rewriting CHAIN: " + rewritten.message());
    }
  }
  const std::string path = join_path(directory, std::string(kChainFileName));
  auto file = io.open(path, OpenMode::read_write);
  if (file.code() == ErrorCode::not_found) {
    file = io.open(path, OpenMode::create_exclusive);
    if (file.ok()) {
      if (Status synced = io.sync_directory(directory); !synced.ok()) {
        (void)io.close(file.value());
        return synced;
      }
    }
  }
  if (!file.ok()) return Status(file.status().code(), "journal " + directory + ": opening CHAIN: " + file.status().message());
  std::deque<Sealed> pending;
  for (std::size_t i = 0; i < sealed; ++i) {
    if (kept.empty() || segments[i].base > kept.back().last) {
      pending.push_back({segments[i].path, segments[i].base, segments[i].end_sequence - 1});
    }
  }
  const crypto::Digest previous = kept.empty() ? crypto::Digest{} : kept.back().link;
  return std::unique_ptr<SegmentChainer>(
      new SegmentChainer(io, std::move(directory), std::move(key), file.value(), kept.size(), previous, std::move(pending),
                         direct));
}

SegmentChainer::SegmentChainer(IoBackend& io, std::string directory, std::shared_ptr<const ChainKey> key, FileId file,
                               std::size_t entries, const crypto::Digest& previous, std::deque<Sealed> pending,
                               bool direct)
    : io_(io),
      directory_(std::move(directory)),
      key_(std::move(key)),
      file_(file),
      direct_(direct),
      entries_(entries),
      previous_(previous),
      queue_(std::move(pending)),
      thread_([this] { run(); }) {
  name_thread(thread_, "annal-chain");
}

SegmentChainer::~SegmentChainer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wanted_.notify_one();
  thread_.join();
  (void)io_.close(file_);
}

void SegmentChainer::sealed(Sealed segment) {
  {
    std::lock_guard lock(mutex_);
    if (!error_.ok()) return;
    queue_.push_back(std::move(segment));
  }
  wanted_.notify_one();
}

void SegmentChainer::wait_idle() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [&] { return queue_.empty(); });
}

Status SegmentChainer::status() const {
  std::lock_guard lock(mutex_);
  return error_;
}

void SegmentChainer::run() {
  make_this_thread_background();
  std::unique_lock lock(mutex_);
  for (;;) {
    wanted_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything given is chained
    const Sealed segment = queue_.front();
    lock.unlock();
    Status chained = chain(segment);
    lock.lock();
    queue_.pop_front();
    if (!chained.ok()) {
      std::fprintf(stderr, "annal: journal %s: chaining stopped (the next open chains what is missing): %s\n",
                   directory_.c_str(), chained.to_string().c_str());
      error_ = std::move(chained);
      queue_.clear();
    }
    if (queue_.empty()) idle_.notify_all();
  }
}

Status SegmentChainer::chain(const Sealed& segment) {
  auto link = segment_link(io_, segment.path, previous_, segment.last, direct_);
  if (!link.ok()) return link.status();
  ChainEntry entry{.base = segment.base, .last = segment.last, .link = link.value().link, .key_version = 0, .tag = {}};
  if (key_) {
    entry.key_version = key_->version;
    entry.tag = chain_entry_tag(entry, key_->key);
  }
  std::array<std::byte, kChainEntryBytes> bytes{};
  encode_chain_entry(entry, bytes);
  if (Status written = io_.write(file_, entries_ * kChainEntryBytes, bytes); !written.ok()) return written;
  if (Status synced = io_.sync(file_); !synced.ok()) return synced;
  ++entries_;
  previous_ = entry.link;
  return {};
}

}  // namespace annal::journal
