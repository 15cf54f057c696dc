// annal keygen ID RIGHT... --keys FILE: makes an API key for annal serve. Appends its line (the id,
// the SHA-256 of a new random secret, the rights) to FILE, created private (0600) if missing, and
// prints the token, ID.SECRET, the one time it is shown: FILE keeps only the hash.
#include <fcntl.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "annal/server/access_keys.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

constexpr std::size_t kSecretBytes = 32;  // 256 bits from OpenSSL's CSPRNG

struct KeygenOptions {
  std::string id;
  std::vector<std::string> rights;
  std::string keys;
};

int run(const KeygenOptions& options) {
  unsigned char random[kSecretBytes];
  if (RAND_bytes(random, sizeof(random)) != 1) return fail("keygen", "OpenSSL could not make random bytes");
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string secret;
  for (const unsigned char byte : random) {
    secret += kDigits[byte >> 4];
    secret += kDigits[byte & 15];
  }
  std::string line = options.id + " " + server::AccessKeys::hash_hex(secret);
  for (const std::string& right : options.rights) line += " " + right;
  line += "\n";
  // Checked before it is written, as the server will read it: the file with the new line must
  // load (a private file, an id not taken yet).
  std::string text;
  if (std::filesystem::exists(options.keys)) {
    if (auto existing = server::AccessKeys::load(options.keys); !existing.ok()) return fail("keygen", existing.status());
    std::ifstream file(options.keys);
    text.assign(std::istreambuf_iterator<char>(file), {});
    if (!text.empty() && text.back() != '\n') line.insert(line.begin(), '\n');
  }
  if (auto checked = server::AccessKeys::parse(text + line, options.keys); !checked.ok()) return fail("keygen", checked.status());
  const int fd = open(options.keys.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return fail("keygen", options.keys + ": " + std::strerror(errno));
  const bool written = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && fsync(fd) == 0;
  const int saved = errno;
  close(fd);
  if (!written) return fail("keygen", options.keys + ": " + std::strerror(saved));
  std::printf("%s.%s\n", options.id.c_str(), secret.c_str());
  return kOk;
}

}  // namespace

void add_keygen(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<KeygenOptions>();
  auto* command = app.add_subcommand(
      "keygen", "Make an API key for annal serve: append its line to the keys file and print its token (ID.SECRET)");
  command->add_option("id", options->id, "The key's id (1 to 64 of A-Z a-z 0-9 - _)")->required();
  command->add_option("rights", options->rights, "read:PREFIX write:PREFIX read:* write:* admin")->required();
  command->add_option("--keys", options->keys, "The keys file to append to (created with mode 0600)")->required();
  command->callback([&exit_code, options] { exit_code = run(*options); });
}

}  // namespace annal::cli
