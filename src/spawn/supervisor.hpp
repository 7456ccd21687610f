// `dnsgate supervise` (DESIGN.md §10): one unprivileged proxy per cell,
// each in its cell's network namespace on sockets the supervisor binds
// there and keeps, restarted when it dies, replaced new-first on SIGHUP.
#pragma once

#include <string>

namespace dnsgate::spawn {

struct SupervisorOptions {
  std::string cells_dir;  // every *.yaml in it is a cell
  std::string binary;     // the dnsgate each proxy runs (re-read at every start)
};

// Runs until SIGTERM or SIGINT; every proxy is then stopped (drained), and
// one JSON line with each cell's counters and last stats goes to stderr.
// Returns the process exit code.
int run_supervisor(const SupervisorOptions& options);

// The hidden `dnsgate cell` command's side of the hand-over: the file
// descriptors the supervisor passes, by the names on its command line.
struct CellDescriptors {
  int config = -1;  // the cell file's text, as the supervisor checked it
  int udp = -1;
  int tcp = -1;
  int events = -1;      // the events file, opened by the supervisor (file sink only)
  int ready = -1;       // one byte is written here once the proxy serves
  int event_ring = -1;  // the shared event ring (create_event_ring)
};

}  // namespace dnsgate::spawn
