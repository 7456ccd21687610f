// Threads of the event sink (the writer, the delivery): they take no
// asynchronous signal, so SIGINT, SIGTERM, SIGHUP and SIGUSR1 reach the
// threads that handle them instead of interrupting a write or a send.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <string>
#include <system_error>
#include <thread>
#include <utility>

namespace dnsgate {

// Starts `body` on a thread named `name` (15 characters at most) with every
// asynchronous signal blocked; false and `error` set when it cannot start.
template <class Body>
bool start_quiet_thread(std::thread& thread, const char* name, Body&& body, std::string& error) {
  sigset_t all_signals;
  sigset_t previous;
  sigfillset(&all_signals);
  for (int synchronous : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    sigdelset(&all_signals, synchronous);
  }
  pthread_sigmask(SIG_BLOCK, &all_signals, &previous);
  try {
    thread = std::thread(std::forward<Body>(body));
  } catch (const std::system_error& failure) {
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    error = std::string("cannot start the ") + name + " thread: " + failure.what();
    return false;
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  pthread_setname_np(thread.native_handle(), name);
  return true;
}

}  // namespace dnsgate
