/* A stub resolver client as a musl (Alpine) workload runs one: getaddrinfo
 * on argv[1], then each address on a line, or "error <code> <message>" and
 * exit 2. Built static with Debian's musl-gcc by test_conformance.py, so
 * the resolver under test is musl's, not glibc's. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s NAME\n", argv[0]);
    return 64;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* result = NULL;
  const int rc = getaddrinfo(argv[1], NULL, &hints, &result);
  if (rc != 0) {
    printf("error %d %s\n", rc, gai_strerror(rc));
    return 2;
  }
  for (const struct addrinfo* ai = result; ai != NULL; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN];
    const void* address = ai->ai_family == AF_INET
                              ? (const void*)&((const struct sockaddr_in*)ai->ai_addr)->sin_addr
                              : (const void*)&((const struct sockaddr_in6*)ai->ai_addr)->sin6_addr;
    if (inet_ntop(ai->ai_family, address, text, sizeof text) != NULL) printf("%s\n", text);
  }
  freeaddrinfo(result);
  return 0;
}
