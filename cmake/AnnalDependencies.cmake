# Every dependency comes from a Debian package; none is downloaded or vendored. A missing one stops
# configure with the package to install (scripts/setup installs them all).

find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

function(annal_missing what package)
  message(FATAL_ERROR
    "annal: ${what} not found. Install the Debian package '${package}' "
    "(apt-get install -y ${package}) or run scripts/setup.")
endfunction()

# Boost.Lockfree (header-only): the many-threads-to-one hand-offs.
find_package(Boost 1.74 CONFIG QUIET)
if(NOT Boost_FOUND)
  annal_missing("Boost (Lockfree)" libboost-dev)
endif()

# liburing: all journal I/O.
pkg_check_modules(URING QUIET IMPORTED_TARGET GLOBAL liburing>=2.3)
if(NOT URING_FOUND)
  annal_missing("liburing" liburing-dev)
endif()

# ISA-L: CRC32C for every journal record (bench/checksum_bench.cc measured it against SSE4.2 and
# XXH3).
pkg_check_modules(ANNAL_ISAL QUIET IMPORTED_TARGET GLOBAL libisal)
if(NOT ANNAL_ISAL_FOUND)
  annal_missing("ISA-L" libisal-dev)
endif()

# Intel's Multi-Buffer Crypto for IPsec: AES-256-GCM of every sealed record (encryption at rest).
# A call costs 45 ns for 256 bytes where OpenSSL's EVP API costs 188 ns, for the same bytes out
# (crypto/src/aead.cc; bench/crypto_bench.cc measures both). OpenSSL keeps the rest of the crypto.
find_package(IPSecMB QUIET)
if(NOT IPSecMB_FOUND)
  annal_missing("Intel IPsec Multi-Buffer Crypto" libipsec-mb-dev)
endif()

# mimalloc: the engine's own heap. Found here so a missing package stops configure; the engine loads
# libmimalloc.so.2 privately at run time (engine/src/heap.h says why it does not link it).
find_package(mimalloc 2.0 CONFIG QUIET)
if(NOT mimalloc_FOUND)
  annal_missing("mimalloc" libmimalloc-dev)
endif()

# simdjson: every JSON input.
find_package(simdjson CONFIG QUIET)
if(NOT simdjson_FOUND)
  annal_missing("simdjson" libsimdjson-dev)
endif()

# CLI11 (header-only): the annal tool's arguments, subcommands and --help.
find_package(CLI11 CONFIG QUIET)
if(NOT CLI11_FOUND)
  annal_missing("CLI11" libcli11-dev)
endif()

# OpenSSL: annal serve's API keys (SHA-256, constant-time comparison) and TLS; the standard, and
# what Asio's ssl stream is built on.
find_package(OpenSSL 3 QUIET)
if(NOT OPENSSL_FOUND)
  annal_missing("OpenSSL" libssl-dev)
endif()

# prometheus-cpp: annal serve's /metrics (counters, histograms and the text exposition format).
find_package(prometheus-cpp CONFIG QUIET)
if(NOT prometheus-cpp_FOUND)
  annal_missing("prometheus-cpp" prometheus-cpp-dev)
endif()

# libpq: the PostgreSQL connector (connectors/postgres), PostgreSQL's own client library.
pkg_check_modules(LIBPQ QUIET IMPORTED_TARGET GLOBAL libpq)
if(NOT LIBPQ_FOUND)
  annal_missing("libpq" libpq-dev)
endif()

# librdkafka: the Kafka connector (connectors/kafka). The reference C client: the idempotent
# producer the export's exactly-once rests on, and a mock cluster (a Kafka protocol server in
# process) for its tests, since Debian packages no broker.
pkg_check_modules(RDKAFKA QUIET IMPORTED_TARGET GLOBAL rdkafka>=2.0)
if(NOT RDKAFKA_FOUND)
  annal_missing("librdkafka" librdkafka-dev)
endif()
if(ANNAL_BUILD_TESTS)
  find_program(ANNAL_KCAT kcat)
  if(NOT ANNAL_KCAT)
    annal_missing("kcat (a Kafka client that is not ours, for the connector's tests)" kcat)
  endif()
endif()

# rabbitmq-c (librabbitmq-dev): the RabbitMQ connector (connectors/rabbitmq). The AMQP 0-9-1 C
# client Debian packages, with publisher confirms, which the export's exactly-once rests on.
pkg_check_modules(RABBITMQ_C QUIET IMPORTED_TARGET GLOBAL librabbitmq)
if(NOT RABBITMQ_C_FOUND)
  annal_missing("rabbitmq-c" librabbitmq-dev)
endif()
# A real RabbitMQ server for the connector's tests and benchmark (each starts a node of its own).
if(ANNAL_BUILD_TESTS OR ANNAL_BUILD_BENCH)
  find_program(ANNAL_RABBITMQ_SERVER rabbitmq-server PATHS /usr/lib/rabbitmq/bin NO_DEFAULT_PATH)
  if(NOT ANNAL_RABBITMQ_SERVER)
    annal_missing("RabbitMQ's server (for the RabbitMQ connector's tests)" rabbitmq-server)
  endif()
  get_filename_component(ANNAL_RABBITMQ_BINDIR ${ANNAL_RABBITMQ_SERVER} DIRECTORY)
endif()
# pika (python3-pika), an AMQP client that is not ours, reads the exported stream back in the
# tests; Debian's own python3, where the package installs it.
if(ANNAL_BUILD_TESTS)
  set(ANNAL_DEBIAN_PYTHON /usr/bin/python3)
  execute_process(COMMAND ${ANNAL_DEBIAN_PYTHON} -c "import pika" RESULT_VARIABLE pika_missing OUTPUT_QUIET ERROR_QUIET)
  if(NOT pika_missing EQUAL 0)
    annal_missing("pika (an AMQP client that is not ours, for the RabbitMQ connector's tests)" python3-pika)
  endif()
endif()

# PostgreSQL's server programs (initdb, pg_ctl), the newest installed: the connector's tests and
# benchmark start a cluster of their own.
if(ANNAL_BUILD_TESTS OR ANNAL_BUILD_BENCH)
  file(GLOB postgres_initdb /usr/lib/postgresql/*/bin/initdb)
  if(NOT postgres_initdb)
    annal_missing("PostgreSQL's server programs (initdb, pg_ctl)" postgresql)
  endif()
  list(SORT postgres_initdb COMPARE NATURAL ORDER DESCENDING)
  list(GET postgres_initdb 0 postgres_initdb)
  get_filename_component(ANNAL_POSTGRES_BINDIR ${postgres_initdb} DIRECTORY)
endif()

if(ANNAL_BUILD_TESTS)
  find_package(GTest CONFIG QUIET)
  if(NOT GTest_FOUND)
    annal_missing("GoogleTest" libgtest-dev)
  endif()
endif()

if(ANNAL_BUILD_BENCH)
  find_package(benchmark CONFIG QUIET)
  if(NOT benchmark_FOUND)
    annal_missing("Google Benchmark" libbenchmark-dev)
  endif()
endif()
