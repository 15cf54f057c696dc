// The transport: Boost.Beast HTTP/1.1 sessions on Boost.Asio, over TCP or TLS (OpenSSL through
// Asio's ssl stream), a strand per connection, a few threads for all of them. What a request means
// is store_api.cc's.
#include "annal/server/server.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast.hpp>
#include <boost/beast/ssl.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include "event_feed.h"
#include "store_api.h"

namespace annal::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

// How long, and how much, a closing connection reads and drops (Session::linger); a connection
// refused because the server is full lingers less, since it holds a descriptor others need.
constexpr std::chrono::seconds kLingerTime{5};
constexpr std::chrono::seconds kRefusedLingerTime{1};
constexpr std::size_t kLingerBytesMax = 64u << 20;
// How long the server waits before it accepts again after it could not (no descriptor left).
constexpr std::chrono::milliseconds kAcceptRetry{100};

// What stop() needs of a connection, whatever it runs over.
class Connection {
 public:
  virtual ~Connection() = default;
  // Ends the connection, on its strand.
  virtual void end() = 0;
};

// What sessions share with the server: the routes, the limits, and the count of answers owed to
// requests read (stop() waits for them: an answer still to come, from a durability callback or a
// query thread, holds its session).
struct Core {
  Core(engine::Engine& engine, const ServerOptions& server_options)
      : api(engine, server_options,
            [this] {
              return Metrics::Transport{connections.load(std::memory_order_relaxed), feeds.running(), api.queries(),
                                        accept_errors.load(std::memory_order_relaxed)};
            }),
        options(server_options),
        feeds(options.feeds_max, options.feed_heartbeat) {}
  StoreApi api;
  const ServerOptions options;
  FeedPool feeds;
  std::atomic<std::size_t> connections{0};
  std::atomic<std::uint64_t> accept_errors{0};

  std::mutex mutex;
  std::condition_variable settled;
  std::size_t owed = 0;                    // under mutex
  std::list<std::weak_ptr<Connection>> live;  // under mutex: for stop() to end them
  bool stopping = false;                   // under mutex
};

// One connection: Stream is beast::tcp_stream, or beast::ssl_stream over one for TLS.
template <typename Stream>
class Session final : public Connection, public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

 public:
  template <typename... TlsContext>
  Session(tcp::socket socket, Core& core, TlsContext&... tls)
      : stream_(std::move(socket), tls...), deadline_(beast::get_lowest_layer(stream_).get_executor()), core_(core) {
    core_.connections.fetch_add(1, std::memory_order_relaxed);
  }
  ~Session() override { core_.connections.fetch_sub(1, std::memory_order_relaxed); }

  // Serves requests; or, with `refusal` (a full server), answers that before it reads anything.
  void start(std::optional<Answer> refusal = std::nullopt) {
    asio::dispatch(lowest().get_executor(), [self = this->shared_from_this(), refusal = std::move(refusal)]() mutable {
      if constexpr (kTls) {
        self->lowest().expires_after(self->core_.options.read_timeout);
        self->stream_.async_handshake(ssl::stream_base::server, [self, refusal = std::move(refusal)](beast::error_code error) mutable {
          if (error) return self->lowest().close();  // not TLS, a bad hello, or too slow
          self->serve(std::move(refusal));
        });
      } else {
        self->serve(std::move(refusal));
      }
    });
  }

  void end() override {
    asio::post(lowest().get_executor(), [self = this->shared_from_this()] {
      beast::error_code ignored;
      self->lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
      self->lowest().close();
    });
  }

 private:
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  void serve(std::optional<Answer> refusal) {
    if (refusal) {
      linger_time_ = kRefusedLingerTime;
      return write(std::move(*refusal), false);
    }
    read();
  }

  void refuse(unsigned status, std::string_view kind, std::string_view detail) {
    write(error_answer(status, kind, detail), false);
  }

  void read() {
    parser_.emplace();
    parser_->body_limit(core_.options.body_bytes_max);
    parser_->header_limit(static_cast<std::uint32_t>(core_.options.header_bytes_max));
    // The request's deadline is a timer of its own, not the stream's: a stream that times out
    // closes its socket, and a client that sent half a request is owed its 408 first.
    lowest().expires_never();
    const std::uint64_t generation = ++reads_;
    deadline_.expires_after(core_.options.read_timeout);
    deadline_.async_wait([self = this->shared_from_this(), generation](beast::error_code error) {
      if (error || generation != self->reads_) return;  // cancelled: the request came whole, or failed
      self->timed_out_ = true;
      beast::error_code ignored;
      self->lowest().socket().cancel(ignored);
    });
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code error, std::size_t) { self->on_read(error); });
  }

  void on_read(beast::error_code error) {
    ++reads_;  // a deadline that fires from now on is this read's, and late
    deadline_.cancel();
    if (timed_out_) {
      if (buffer_.size() == 0 && !parser_->got_some()) return lowest().close();  // an idle keep-alive connection
      return refuse(408, "request_timeout", "the request did not arrive whole in time");
    }
    if (error == http::error::body_limit) {
      return refuse(413, "body_too_large", "a request body is at most " + std::to_string(core_.options.body_bytes_max) + " bytes");
    }
    if (error == http::error::header_limit) {
      return refuse(431, "header_too_large", "request headers are at most " + std::to_string(core_.options.header_bytes_max) + " bytes");
    }
    if (error) return lowest().close();  // end of stream, reset, or a request HTTP cannot parse
    request_ = parser_->release();
    // The last request a connection may make is answered, and the connection closed.
    const bool keep_alive = request_.keep_alive() && ++requests_ < core_.options.requests_per_connection_max;
    const auto method = request_.method_string();
    const auto target = request_.target();
    const auto last_event_id = request_["Last-Event-ID"];
    const auto authorization = request_[http::field::authorization];
    auto answer_to = reply(keep_alive);
    if (!answer_to) return refuse(503, "stopping", "the server is stopping; try again once it is back");
    core_.api.handle({.method = std::string_view(method.data(), method.size()),
                      .target = std::string_view(target.data(), target.size()),
                      .body = request_.body(),
                      .last_event_id = std::string_view(last_event_id.data(), last_event_id.size()),
                      .authorization = std::string_view(authorization.data(), authorization.size())},
                     parser_json_, std::move(*answer_to));
  }

  // The one way an answer comes back: at once on this strand, or from another thread (the
  // engine's callback thread for a durable append, a query thread), which posts it here and tells
  // stop() it no longer owes it.
  // nullopt once the server is stopping: stop() counts what is owed only until then, and an
  // answer it did not wait for would come after the server is gone.
  std::optional<Reply> reply(bool keep_alive) {
    {
      std::lock_guard lock(core_.mutex);
      if (core_.stopping) return std::nullopt;
      ++core_.owed;
    }
    return [self = this->shared_from_this(), keep_alive](Answer answer) mutable {
      Core& core = self->core_;
      {
        // Its copy of the strand goes before stop() may go on: the strand's service dies with the
        // context.
        const auto strand = self->lowest().get_executor();  // before `self` moves into the handler
        asio::post(strand, [self = std::move(self), answer = std::move(answer), keep_alive]() mutable {
          self->write(std::move(answer), keep_alive);
        });
      }
      std::lock_guard lock(core.mutex);
      --core.owed;
      core.settled.notify_all();
    };
  }

  void write(Answer answer, bool keep_alive) {
    if (answer.feed) return start_feed(std::move(answer.feed));
    response_ = {static_cast<http::status>(answer.status), 11};
    response_.set(http::field::server, "annal");
    response_.set(http::field::content_type, answer.content_type);
    if (answer.sequence) response_.set("Annal-Sequence", std::to_string(*answer.sequence));
    for (const auto& [name, value] : answer.headers) response_.set(name, value);
    response_.keep_alive(keep_alive);
    response_.body() = std::move(answer.body);
    response_.prepare_payload();
    lowest().expires_after(core_.options.write_timeout);
    http::async_write(stream_, response_, [self = this->shared_from_this()](beast::error_code error, std::size_t) {
      if (error) return self->lowest().close();
      if (self->response_.keep_alive()) return self->read();
      self->finish();
    });
  }

  // After the last answer: TCP sends its end and lingers; TLS says close_notify first, and the
  // client's own close ends the wait.
  void finish() {
    if constexpr (kTls) {
      lowest().expires_after(linger_time_);
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) { self->lowest().close(); });
    } else {
      beast::error_code ignored;
      lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
      linger();
    }
  }

  // GET /subscribe: from here on the connection carries the feed, written by its own thread.
  void start_feed(std::shared_ptr<FeedSource> source) {
    const bool started = core_.feeds.start(std::move(source), [self = this->shared_from_this()](std::string chunk) {
      return self->write_chunk(std::move(chunk));
    });
    if (!started) {
      write(error_answer(503, "too_many_feeds", "at most " + std::to_string(core_.options.feeds_max) +
                                                       " event feeds at once; try again"),
            false);
    }
  }

  // A feed's write, from its thread: done on the strand, waited for here. It always completes,
  // with an error at worst (end() closes the socket; the write deadline ends a client that stopped
  // reading), so stop() can join the feed threads before it stops the context.
  bool write_chunk(std::string chunk) {
    std::promise<bool> written;
    std::future<bool> done = written.get_future();
    asio::post(lowest().get_executor(), [this, &chunk, &written] {
      lowest().expires_after(core_.options.write_timeout);
      asio::async_write(stream_, asio::buffer(chunk), [&written](beast::error_code error, std::size_t) {
        written.set_value(!error);
      });
    });
    return done.get();
  }

  // After a last answer, what the client still sends (the rest of a body refused as too large) is
  // read and dropped for a while before the socket closes: closing with unread bytes would send a
  // reset, and the client could lose the answer it has not read yet.
  void linger() {
    if (!discard_) discard_ = std::make_unique<std::array<char, 4096>>();
    lowest().expires_after(linger_time_);
    stream_.async_read_some(asio::buffer(*discard_), [self = this->shared_from_this()](beast::error_code error, std::size_t n) {
      self->lingered_ += n;
      if (error || self->lingered_ > kLingerBytesMax) return self->lowest().close();
      self->linger();
    });
  }

  Stream stream_;
  asio::steady_timer deadline_;  // the request's (read())
  std::uint64_t reads_ = 0;      // which read a deadline belongs to
  bool timed_out_ = false;
  std::size_t requests_ = 0;     // answered on this connection
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  simdjson::dom::parser parser_json_;
  std::unique_ptr<std::array<char, 4096>> discard_;  // linger()'s, made when first needed
  std::size_t lingered_ = 0;
  std::chrono::seconds linger_time_ = kLingerTime;
  Core& core_;
};

class ServerImpl final : public Server {
 public:
  ServerImpl(engine::Engine& engine, const ServerOptions& options)
      : core_(engine, options), acceptor_(asio::make_strand(context_)), accept_retry_(acceptor_.get_executor()) {}
  ~ServerImpl() override { stop(); }

  Status listen() {
    beast::error_code error;
    const auto address = asio::ip::make_address(core_.options.address, error);
    if (error) return Status(ErrorCode::invalid_argument, "listen address " + core_.options.address + ": " + error.message());
    if (core_.options.keys_file.empty() && !address.is_loopback()) {
      return Status(ErrorCode::invalid_argument,
                    "listening on " + core_.options.address + " without API keys would let anyone who can reach it read and write; "
                    "give a keys file, or listen on a loopback address such as 127.0.0.1");
    }
    if (!core_.options.keys_file.empty()) {
      if (Status loaded = reload_keys(); !loaded.ok()) return loaded;
    }
    if (core_.options.tls_certificate_file.empty() != core_.options.tls_key_file.empty()) {
      return Status(ErrorCode::invalid_argument, "TLS needs both a certificate chain file and its private key file");
    }
    if (!core_.options.tls_certificate_file.empty()) {
      if (Status loaded = load_tls(); !loaded.ok()) return loaded;
    }
    const tcp::endpoint endpoint(address, core_.options.port);
    const auto fail = [&](const char* what) {
      return Status(ErrorCode::io_error, std::string(what) + " " + core_.options.address + ":" +
                                             std::to_string(core_.options.port) + ": " + error.message());
    };
    if (acceptor_.open(endpoint.protocol(), error); error) return fail("open");
    if (acceptor_.set_option(asio::socket_base::reuse_address(true), error); error) return fail("reuse");
    if (acceptor_.bind(endpoint, error); error) return fail("bind");
    if (acceptor_.listen(asio::socket_base::max_listen_connections, error); error) return fail("listen on");
    port_ = acceptor_.local_endpoint().port();
    accept();
    for (unsigned i = 0; i < std::max(1u, core_.options.threads); ++i) threads_.emplace_back([this] { context_.run(); });
    return {};
  }

  std::uint16_t port() const override { return port_; }

  Status reload_keys() override {
    if (core_.options.keys_file.empty()) return Status(ErrorCode::invalid_argument, "the server was started without a keys file");
    auto keys = AccessKeys::load(core_.options.keys_file);
    if (!keys.ok()) return keys.status();
    core_.api.set_keys(std::make_shared<const AccessKeys>(std::move(keys).value()));
    return {};
  }

  void stop() override {
    std::list<std::weak_ptr<Connection>> live;
    {
      std::lock_guard lock(core_.mutex);
      if (core_.stopping) return;
      core_.stopping = true;
      live.swap(core_.live);
    }
    asio::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
      accept_retry_.cancel();
    });
    for (const auto& weak : live) {
      if (const auto session = weak.lock()) session->end();
    }
    core_.feeds.stop();
    core_.api.stop();
    {
      // Every request read is answered (or its connection is gone) before the threads stop: an
      // answer still to come holds its session, which must not outlive the context.
      std::unique_lock lock(core_.mutex);
      core_.settled.wait(lock, [&] { return core_.owed == 0; });
    }
    context_.stop();
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
  }

 private:
  // TLS 1.2 or later, with the certificate chain and key in PEM files.
  Status load_tls() {
    tls_.emplace(ssl::context::tls_server);
    beast::error_code error;
    const auto fail = [&](const std::string& what) {
      return Status(ErrorCode::invalid_argument, "TLS: " + what + ": " + error.message());
    };
    if (tls_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                              ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                          error);
        error) {
      return fail("options");
    }
    if (tls_->use_certificate_chain_file(core_.options.tls_certificate_file, error); error) {
      return fail("certificate " + core_.options.tls_certificate_file);
    }
    if (tls_->use_private_key_file(core_.options.tls_key_file, ssl::context::pem, error); error) {
      return fail("private key " + core_.options.tls_key_file);
    }
    return {};
  }

  void accept() {
    acceptor_.async_accept(asio::make_strand(context_), [this](beast::error_code error, tcp::socket socket) {
      if (error == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (error) return accept_later(error);
      if (accept_failing_) {
        accept_failing_ = false;
        std::fprintf(stderr, "annal server: accepting connections again\n");
      }
      if (tls_) {
        admit(std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(std::move(socket), core_, *tls_));
      } else {
        admit(std::make_shared<Session<beast::tcp_stream>>(std::move(socket), core_));
      }
      accept();
    });
  }

  // Out of descriptors (EMFILE, ENFILE) or memory, mostly (Asio retries a connection reset before
  // it was taken by itself): the error would come again at once, and an accept loop that retried at
  // once would spin a thread. Connections wait in the listen backlog meanwhile; those the server
  // holds free descriptors as they end.
  void accept_later(const beast::error_code& error) {
    core_.accept_errors.fetch_add(1, std::memory_order_relaxed);
    if (!accept_failing_) {
      accept_failing_ = true;
      const bool out_of_files = error == asio::error::no_descriptors || error.value() == ENFILE;
      std::fprintf(stderr, "annal server: cannot accept connections: %s; trying again every %lld ms%s\n",
                   error.message().c_str(), static_cast<long long>(kAcceptRetry.count()),
                   out_of_files ? " (raise the open-file limit, ulimit -n, or lower the connection limit)" : "");
    }
    accept_retry_.expires_after(kAcceptRetry);
    accept_retry_.async_wait([this](beast::error_code waited) {
      if (waited || !acceptor_.is_open()) return;
      accept();
    });
  }

  template <typename SessionPtr>
  void admit(const SessionPtr& session) {
    const bool full = core_.connections.load(std::memory_order_relaxed) > core_.options.connections_max;
    {
      std::lock_guard lock(core_.mutex);
      if (core_.stopping) return;
      std::erase_if(core_.live, [](const std::weak_ptr<Connection>& weak) { return weak.expired(); });
      core_.live.push_back(session);
    }
    if (!full) return session->start();
    session->start(error_answer(503, "too_many_connections",
                                   "at most " + std::to_string(core_.options.connections_max) + " connections; try again"));
  }

  Core core_;
  std::optional<ssl::context> tls_;  // set at listen() when a certificate is given
  asio::io_context context_;
  tcp::acceptor acceptor_;  // on a strand of its own: the accept loop, its retries and stop()'s close
  asio::steady_timer accept_retry_;
  bool accept_failing_ = false;
  std::uint16_t port_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace

Result<std::unique_ptr<Server>> Server::start(engine::Engine& engine, const ServerOptions& options) {
  auto server = std::make_unique<ServerImpl>(engine, options);
  if (Status listening = server->listen(); !listening.ok()) return listening;
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace annal::server
