// One OpenMP pool for our kernels and oneDNN (both link libgomp), sized to physical cores:
// hyperthreads share the FMA units, so extra threads only add contention.
#include <omp.h>
#include <sched.h>

#include <fstream>
#include <set>
#include <string>
#include <utility>

#include "kernels.h"

namespace nk {

static int read_int(const std::string& path) {
  std::ifstream f(path);
  int v = -1;
  f >> v;
  return v;
}

int physical_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return omp_get_num_procs();
  std::set<std::pair<int, int>> cores;
  int logical = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    ++logical;
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    const int pkg = read_int(base + "physical_package_id");
    const int core = read_int(base + "core_id");
    if (pkg < 0 || core < 0) return logical > 0 ? CPU_COUNT(&set) : omp_get_num_procs();
    cores.insert({pkg, core});
  }
  return cores.empty() ? 1 : static_cast<int>(cores.size());
}

void set_threads(int n) { omp_set_num_threads(n < 1 ? 1 : n); }

int threads() { return omp_get_max_threads(); }

}  // namespace nk
