#include "spawn/seccomp_policy.hpp"

#include <fcntl.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace dnsgate::spawn {

namespace {

// What the proxy does once it serves: sockets, epoll, time, memory,
// threads (the event writer), signals, randomness, reading files (a CA
// file, GnuTLS and p11-kit configuration read when a TLS context is made),
// writing to descriptors it already has. Grouped by purpose; the docs list
// the same groups.
constexpr const char* kAllowed[] = {
    // descriptors it holds
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "close",
    "lseek",
    "fcntl",
    "ioctl",
    "dup",
    "dup3",
    "pipe2",
    "eventfd2",
    "fsync",
    "fdatasync",
    // sockets: upstream connections (TCP, TLS, QUIC), workload connections
    "socket",
    "connect",
    "bind",
    "accept4",
    "shutdown",
    "getsockname",
    "getpeername",
    "setsockopt",
    "getsockopt",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    // waiting
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "nanosleep",
    "clock_nanosleep",
    "sched_yield",
    // time, identity, limits
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "getpid",
    "gettid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "uname",
    "sysinfo",
    "getrlimit",
    "prlimit64",
    "sched_getaffinity",
    "getrandom",
    // the event writer asks for SCHED_BATCH (src/events/event_sink.cpp); no
    // unprivileged process can raise its priority with these
    "sched_setscheduler",
    "sched_getscheduler",
    "sched_setparam",
    "sched_getparam",
    // memory
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "membarrier",
    // threads and signals
    "clone",
    "futex",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "exit",
    "exit_group",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigtimedwait",
    "sigaltstack",
    "restart_syscall",
    // file metadata and reading (opening is restricted below)
    "fstat",
    "newfstatat",
    "statx",
    "stat",
    "lstat",
    "fstatfs",
    "statfs",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents64",
    "getcwd",
};

struct ContextFree {
  void operator()(scmp_filter_ctx ctx) const noexcept { seccomp_release(ctx); }
};

}  // namespace

bool install_seccomp_filter(std::string& error) {
  std::unique_ptr<void, ContextFree> ctx(seccomp_init(SCMP_ACT_KILL_PROCESS));
  if (!ctx) {
    error = "seccomp_init failed";
    return false;
  }
  for (const char* name : kAllowed) {
    const int number = seccomp_syscall_resolve_name(name);
    if (number == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (const int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, number, 0); rc != 0) {
      error = std::string("seccomp rule for ") + name + ": " + std::strerror(-rc);
      return false;
    }
  }
  // Files may be opened for reading only: no creating, truncating or writing.
  const auto read_only = [](unsigned arg) {
    return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ,
                        static_cast<scmp_datum_t>(O_ACCMODE | O_CREAT | O_TRUNC | O_TMPFILE),
                        static_cast<scmp_datum_t>(O_RDONLY)};
  };
  int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(openat), 1, read_only(2));
  if (rc == 0) rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(open), 1, read_only(1));
  // Signals to its own threads only (abort, raise): other cells' proxies
  // may run as the same user.
  if (rc == 0) {
    rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                          SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(getpid())));
  }
  // A thread naming itself (prctl PR_SET_NAME): libmicrohttpd's server
  // thread (the metrics endpoint) does so when it first runs, which may be
  // after the filter is in place. Every other prctl stays forbidden.
  if (rc == 0) {
    rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                          SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(PR_SET_NAME)));
  }
  // clone3 takes its flags in memory a filter cannot read: glibc falls back
  // to clone when told it does not exist.
  if (rc == 0) rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  if (rc != 0) {
    error = std::string("seccomp rules: ") + std::strerror(-rc);
    return false;
  }
  if ((rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_TSYNC, 1)) != 0) {
    error = std::string("seccomp TSYNC: ") + std::strerror(-rc);
    return false;
  }
  if ((rc = seccomp_load(ctx.get())) != 0) {
    error = std::string("seccomp_load: ") + std::strerror(-rc);
    return false;
  }
  return true;
}

void make_forbidden_call() noexcept {
  // chroot is on no allow-list a DNS proxy would need.
  syscall(SYS_chroot, "/");
}

}  // namespace dnsgate::spawn
