#include "arguments.h"

#include <charconv>
#include <cmath>
#include <string>

#include "annal/crypto/hkdf.h"
#include "annal/crypto/key_file.h"

namespace annal::cli {

CLI::Validator whole_number(std::uint64_t low, std::uint64_t high) {
  const std::string allowed = high == UINT64_MAX ? "a whole number from " + std::to_string(low) + " up"
                                                 : "a whole number from " + std::to_string(low) + " to " +
                                                       std::to_string(high);
  return CLI::Validator(
      [low, high, allowed](std::string& text) -> std::string {
        std::uint64_t value = 0;
        const char* end = text.data() + text.size();
        const auto [stop, error] = std::from_chars(text.data(), end, value);
        if (text.empty() || error != std::errc() || stop != end || value < low || value > high) {
          return "must be " + allowed + ", not " + text;
        }
        return {};
      },
      "N: " + allowed);
}

void add_accept_data_loss(CLI::App& command, bool& accept) {
  command.add_flag("--accept-data-loss", accept,
                   "Open even though the log lost acknowledged events (a deleted segment): it continues after what it "
                   "holds, and the lost sequences go to new events. Run annal verify first.");
}

void add_start_timeout(CLI::App& command, std::chrono::milliseconds& timeout, const std::string& what) {
  command
      .add_option_function<double>(
          "--start-timeout",
          [&timeout](double seconds) {
            timeout = std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
          },
          "Seconds to keep trying to " + what + " at start (default " +
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) + ")")
      // From a millisecond to a day: CLI::PositiveNumber lets nan and 1e300 through, whose
      // milliseconds do not fit the duration.
      ->check(CLI::Validator(
          [](const std::string& text) -> std::string {
            double seconds = 0;
            if (!CLI::detail::lexical_cast(text, seconds) || !std::isfinite(seconds) || seconds < 0.001 ||
                seconds > 86'400) {
              return "--start-timeout takes seconds from 0.001 to 86400, not " + text;
            }
            return {};
          },
          "SECONDS"));
}

void add_key_file(CLI::App& command, std::string& key_file) {
  command.add_option("--key-file", key_file,
                     "The master keys of an encrypted store (a key file made by annal masterkey); or ANNAL_KEY_FILE")
      ->envname("ANNAL_KEY_FILE");
}

Status use_key_file(const std::string& key_file, engine::Options& options) {
  options.encryption = nullptr;
  if (key_file.empty()) return {};
  auto keys = crypto::KeyFile::load(key_file);
  if (!keys.ok()) return keys.status();
  options.encryption = std::move(keys).value();
  return {};
}

journal::ChainKeys chain_keys(const engine::Options& options) {
  if (!options.encryption) return {};
  return crypto::chain_keys(options.encryption);
}

CLI::Option* add_sign_key(CLI::App& command, std::string& sign_key_file) {
  return command.add_option("--sign-key", sign_key_file,
                     "A key file of its own (made by annal masterkey, kept apart from the master keys) to sign chain "
                     "heads with; or ANNAL_SIGN_KEY_FILE")
      ->envname("ANNAL_SIGN_KEY_FILE");
}

Result<SigningKeys> load_signing_keys(const std::string& path) {
  auto keys = crypto::KeyFile::load(path);
  if (!keys.ok()) return keys.status();
  std::shared_ptr<crypto::KeyFile> file = std::move(keys).value();
  const std::uint32_t newest = file->current_version();
  return SigningKeys{.newest = newest, .keys = crypto::head_signing_keys(std::move(file))};
}

}  // namespace annal::cli
