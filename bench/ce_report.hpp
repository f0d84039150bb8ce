// What bench_ce prints and writes from its Results: the header (machine, load, peers), the table
// row by row as the rows are measured, the failures, the goals of issue 5 judged on this run's
// ratios, the JSON and the plot (bench/plot.py).
#pragma once

#include <string>

#include "ce_contenders.hpp"
#include "ce_measure.hpp"

namespace bench {

double load_average();  // of /proc/loadavg; -1 when unreadable

// Everything before the table: the machine, the formula lossjit runs, the peers, the header line.
void print_preamble(bool quick, int all_threads, const std::string& lossjit_formula, const Peers& peers);
// One line of the table: the row's GB/s per contender, then lossjit's ratios.
void print_row(const Results& r, const Row& row);
// Why each FAILED cell failed, after the table.
void print_failures(const Results& r);
// The goals of issue 5, MET / NOT MET / N/A each (all_threads: the "all cores" rows' count).
void print_goals(const Results& r, int all_threads);
// The JSON (also when only a plot is asked for: the plot is drawn from it) and the plot.
void write_files(const Results& r, std::string json, const std::string& plot);

}  // namespace bench
