#include "arguments.h"

#include <charconv>
#include <string>

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

}  // namespace annal::cli
