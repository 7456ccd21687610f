/* deny_io_uring PROGRAM [ARG...]: runs PROGRAM (execv, same PID) under a
 * seccomp filter that lets every system call through except io_uring_setup,
 * which fails with EPERM, as in a container whose seccomp profile forbids
 * io_uring. test_io_backend.py builds it with `gcc ... -lseccomp` and runs
 * `dnsgate run` through it to see `io: auto` fall back to epoll and
 * `io: uring` refuse to start. */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PROGRAM [ARG...]\n", argv[0]);
    return 2;
  }
  scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
  if (filter == NULL) {
    fprintf(stderr, "deny_io_uring: seccomp_init failed\n");
    return 126;
  }
  int rc = seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(io_uring_setup), 0);
  if (rc == 0) rc = seccomp_load(filter); /* sets no_new_privs first */
  seccomp_release(filter);
  if (rc != 0) {
    fprintf(stderr, "deny_io_uring: cannot install the filter: %s\n", strerror(-rc));
    return 126;
  }
  execv(argv[1], argv + 1);
  fprintf(stderr, "deny_io_uring: execv %s: %s\n", argv[1], strerror(errno));
  return 127;
}
