// The commands of the supervisor (DESIGN.md §10): `supervise`, and `cell`,
// which the supervisor runs for each cell and nobody else should.
#pragma once

#include <atomic>
#include <string>

#include "dnsgate/event_sink.hpp"
#include "dnsgate/proxy.hpp"
#include "spawn/supervisor.hpp"

namespace dnsgate::cli {

// `dnsgate supervise --cells DIR`: root only. `binary` empty: this one.
int supervise_command(const std::string& cells_dir, const std::string& binary);

// `dnsgate cell`: one cell's proxy on the descriptors the supervisor
// passed, in the namespace and as the user it set, under seccomp.
int cell_command(const std::string& name, const spawn::CellDescriptors& fds,
                 const std::atomic<bool>& stop_requested, int stop_wake_fd);

// The end of `run` and `cell` alike: the sink drained and closed, its
// write errors logged, then the stats line on stderr, bare JSON and last,
// so a supervisor can parse it.
void report_stop(CloudEventSink& sink, const DnsProxyStats& stats);

// The start of `run` and `cell` alike: one line naming the I/O backend that
// runs, and why when `io: auto` fell back to epoll (ProxyHooks::io_chosen).
void log_io_backend(IoBackend backend, std::string_view why);

}  // namespace dnsgate::cli
