// The answer a validating proxy relays (DESIGN §9): the upstream's bytes
// with the workload's id, AD set by the verdict alone, CD as the workload
// sent it, and, for a workload that did not set DO, without the DNSSEC
// records it did not ask for and with its OPT as it asked (none, or DO
// clear). The one place where relayed bytes are re-encoded.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace dnsgate::dnssec {

struct RelayShape {
  std::uint16_t client_id = 0;
  bool authentic = false;          // AD=1
  bool checking_disabled = false;  // the workload's CD
  bool client_opt = false;         // the workload sent an OPT
  bool client_do = false;          // ... with DO=1
  std::uint16_t ede =
      0xFFFF;  // an EDE option to add (insecure for a reason), if the workload has an OPT
};

// Writes the answer to relay into `out`; false when `packet` cannot be
// re-encoded (it was read once already, so only on a hostile length).
bool shape_answer(std::span<const std::uint8_t> packet, const RelayShape& shape,
                  std::vector<std::uint8_t>& out);

}  // namespace dnsgate::dnssec
