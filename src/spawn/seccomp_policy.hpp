// The system calls a cell's proxy may make once it serves (DESIGN.md §10,
// docs/running.md "The seccomp allow-list"). Anything else kills the
// whole process (SIGSYS), so a compromised proxy cannot exec, ptrace,
// mount, change namespaces or open files for writing.
#pragma once

#include <string>

namespace dnsgate::spawn {

// Installs the filter on every thread of the process (TSYNC). False and
// `error` set when the kernel or libseccomp refuses it.
bool install_seccomp_filter(std::string& error);

// Makes one call outside the allow-list (for tests: the process dies by
// SIGSYS if the filter is in place, and returns if it is not).
void make_forbidden_call() noexcept;

}  // namespace dnsgate::spawn
