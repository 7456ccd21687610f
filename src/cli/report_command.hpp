// `dnsgate report` (DESIGN.md §12 "Audit report", docs/cli.md "report"):
// reads events files (or stdin) line by line and prints the summary that
// src/report/report.hpp counts and renders.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <string>
#include <vector>

namespace dnsgate::cli {

struct ReportArgs {
  std::string cell;
  std::string since;
  std::size_t top = 10;
  bool json = false;
  std::vector<std::string> files;  // "-" is stdin
};

// Adds the `report` subcommand to `app`, its options bound to `args`.
CLI::App* add_report_command(CLI::App& app, ReportArgs& args);

// Exit 0 with the report on stdout, 1 if a file cannot be read, 2 for a
// bad --since.
int report_command(const ReportArgs& args);

}  // namespace dnsgate::cli
