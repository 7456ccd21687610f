// `dnsgate report`: the files, stdin and the options (report_command.hpp).
#include "cli/report_command.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "report/report.hpp"

namespace dnsgate::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntimeFailure = 1;
constexpr int kExitBadUsage = 2;

constexpr std::size_t kChunk = std::size_t{64} * 1024;
// A dnsgate event is well under 4 KiB; a longer line is counted bad and
// skipped without being held, so memory stays bounded whatever the file.
constexpr std::size_t kMaxLine = std::size_t{1024} * 1024;
// The most topRefused rows --top may ask for (the table tracks 10,000 names).
constexpr std::size_t kMaxTop = 1000;

std::string display_name(const std::string& file) {
  return file == "-" ? std::string("(stdin)") : file;
}

// Opens `file` for reading ("-": stdin, not to be closed); -1 with `error`
// set if it cannot be read.
int open_input(const std::string& file, std::string& error) {
  if (file == "-") return STDIN_FILENO;
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = std::strerror(errno);
    return -1;
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || S_ISDIR(info.st_mode)) {
    error = S_ISDIR(info.st_mode) ? std::strerror(EISDIR) : std::strerror(errno);
    ::close(fd);
    return -1;
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return fd;
}

// Streams `fd` through `builder` one line at a time, in chunks: memory is
// one chunk and at most one line, whatever the size of the file.
bool feed(int fd, report::ReportBuilder& builder, std::vector<char>& chunk, std::string& line,
          std::string& error) {
  bool overlong = false;
  line.clear();
  for (;;) {
    const ssize_t got = ::read(fd, chunk.data(), chunk.size());
    if (got < 0) {
      if (errno == EINTR) continue;
      error = std::strerror(errno);
      return false;
    }
    if (got == 0) break;
    std::string_view data(chunk.data(), static_cast<std::size_t>(got));
    while (!data.empty()) {
      const std::size_t newline = data.find('\n');
      const std::string_view piece = data.substr(0, newline);
      if (newline != std::string_view::npos && line.empty() && !overlong) {
        builder.add_line(piece);  // the whole line is in the chunk: no copy
      } else {
        if (!overlong && line.size() + piece.size() > kMaxLine) {
          overlong = true;
          line.clear();
        }
        if (!overlong) line.append(piece);
        if (newline != std::string_view::npos) {
          if (overlong) {
            builder.add_bad_line();
          } else {
            builder.add_line(line);
          }
          line.clear();
          overlong = false;
        }
      }
      if (newline == std::string_view::npos) break;
      data.remove_prefix(newline + 1);
    }
  }
  // A last line without its newline (a file still being written) counts too.
  if (overlong) {
    builder.add_bad_line();
  } else if (!line.empty()) {
    builder.add_line(line);
  }
  return true;
}

}  // namespace

CLI::App* add_report_command(CLI::App& app, ReportArgs& args) {
  CLI::App* report = app.add_subcommand(
      "report",
      "Summarize events files (JSON Lines; '-' for stdin): actions, reasons, top refused names, "
      "upstream latency and errors");
  report->add_option("--cell", args.cell, "count only the events of this cell");
  report->add_option("--since", args.since,
                     "count only events at or after this RFC 3339 time (2026-11-26T09:00:00Z)");
  report->add_option("--top", args.top, "rows of the top refused names (default 10)")
      ->check(CLI::Range(std::size_t{1}, kMaxTop));
  report->add_flag("--json", args.json, "print one JSON object");
  report->add_option("files", args.files, "events files, in order ('-' for stdin)")
      ->required()
      ->type_name("FILE");
  return report;
}

int report_command(const ReportArgs& args) {
  report::ReportOptions options;
  options.cell = args.cell;
  options.top = args.top;
  if (!args.since.empty()) {
    options.since = report::parse_rfc3339(args.since);
    if (!options.since) {
      std::fprintf(stderr,
                   "dnsgate: report: --since \"%s\" is not an RFC 3339 time (as in "
                   "2026-11-26T09:00:00Z or 2026-11-26T10:00:00+01:00)\n",
                   args.since.c_str());
      return kExitBadUsage;
    }
  }

  // Every file is checked before the first is read: a typo in the last of
  // ten rotated files fails at once, not after the other nine.
  std::string error;
  for (const std::string& file : args.files) {
    const int fd = open_input(file, error);
    if (fd < 0) {
      std::fprintf(stderr, "dnsgate: report: %s: %s\n", file.c_str(), error.c_str());
      return kExitRuntimeFailure;
    }
    if (fd != STDIN_FILENO) ::close(fd);
  }

  report::ReportBuilder builder(options);
  std::vector<char> chunk(kChunk);
  std::string line;
  for (const std::string& file : args.files) {
    const int fd = open_input(file, error);
    if (fd < 0) {
      std::fprintf(stderr, "dnsgate: report: %s: %s\n", file.c_str(), error.c_str());
      return kExitRuntimeFailure;
    }
    const bool ok = feed(fd, builder, chunk, line, error);
    if (fd != STDIN_FILENO) ::close(fd);
    if (!ok) {
      std::fprintf(stderr, "dnsgate: report: %s: %s\n", display_name(file).c_str(), error.c_str());
      return kExitRuntimeFailure;
    }
  }

  const report::Report result = builder.result();
  const std::string out = args.json ? report::render_json(result) : report::render_text(result);
  if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0) {
    std::fprintf(stderr, "dnsgate: report: cannot write the report: %s\n", std::strerror(errno));
    return kExitRuntimeFailure;
  }
  return kExitOk;
}

}  // namespace dnsgate::cli
