// Optimal temporal partition of a motion into N consecutive clips (MATE, Eq. 1).
//
// cost[n, a, b] (n < N, 0 <= a < b <= G) is the cost of giving sub-text n the grid units [a, b).
// We want 0 = b_0 < b_1 < ... < b_N = G, every clip at least `min_units` long, minimising
//     sum_n cost[n, b_n, b_{n+1}].
// The paper enumerates all C(G-1, N-1) partitions. The sum is separable along the chain, so a
// dynamic program finds the same minimum in O(N * G^2):
//     best[0][0] = 0
//     best[n+1][b] = min_a  best[n][a] + cost[n, a, b]        (b - a >= min_units)
// and the arg-mins give the boundaries back. Ties go to the smallest `a` (the earliest boundary),
// which makes the answer deterministic.
//
// Every entry point validates its input and raises std::invalid_argument (ValueError in Python)
// naming the problem: the extension must never read out of bounds, whatever it is handed.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace py = pybind11;

namespace {

struct Table {
    const void* data = nullptr;  // C-contiguous [N, G+1, G+1]
    bool is_double = false;
    int64_t N = 0;
    int64_t G = 0;
};

struct Result {
    std::vector<int64_t> bounds;  // N + 1 grid indices
    double cost = 0.0;
};

// Shape/dtype checks that need the GIL (they touch Python objects).
Table describe(const py::array& arr, const std::string& where) {
    if (arr.ndim() != 3) {
        throw std::invalid_argument(where + "cost must be 3-D [N, G+1, G+1], got " +
                                    std::to_string(arr.ndim()) + "-D");
    }
    Table t;
    if (arr.dtype().is(py::dtype::of<double>())) {
        t.is_double = true;
    } else if (arr.dtype().is(py::dtype::of<float>())) {
        t.is_double = false;
    } else {
        throw std::invalid_argument(where + "cost dtype must be float32 or float64, got " +
                                    std::string(py::str(arr.dtype())));
    }
    const int64_t n = arr.shape(0), g1 = arr.shape(1), g2 = arr.shape(2);
    if (g1 != g2) {
        throw std::invalid_argument(where + "cost must have shape [N, G+1, G+1], got [" +
                                    std::to_string(n) + ", " + std::to_string(g1) + ", " +
                                    std::to_string(g2) + "]");
    }
    if (n < 1) throw std::invalid_argument(where + "cost has N = 0 sub-texts; need N >= 1");
    if (g1 < 2) {
        throw std::invalid_argument(where + "cost has G = " + std::to_string(g1 - 1) +
                                    " grid units; need G >= 1");
    }
    if (!(arr.flags() & py::array::c_style)) {
        throw std::invalid_argument(where + "cost must be C-contiguous (np.ascontiguousarray)");
    }
    t.data = arr.data();
    t.N = n;
    t.G = g1 - 1;
    return t;
}

template <typename T>
Result solve_typed(const T* cost, int64_t N, int64_t G, int64_t min_units, const std::string& where) {
    const int64_t S = G + 1;  // row stride
    // Written without N * min_units, which overflows int64 for huge min_units.
    if (min_units > G || N > G / min_units) {
        throw std::invalid_argument(where + "N * min_units = " + std::to_string(N) + " * " +
                                    std::to_string(min_units) + " exceeds G = " +
                                    std::to_string(G) + " grid units (N > G when min_units = 1)");
    }
    // Every entry a < b must be finite, read by the DP or not: a NaN is a bug upstream.
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t a = 0; a < G; ++a) {
            for (int64_t b = a + 1; b <= G; ++b) {
                if (!std::isfinite(static_cast<double>(cost[(n * S + a) * S + b]))) {
                    throw std::invalid_argument(where + "cost[" + std::to_string(n) + ", " +
                                                std::to_string(a) + ", " + std::to_string(b) +
                                                "] is not finite (NaN or inf)");
                }
            }
        }
    }
    const double inf = std::numeric_limits<double>::infinity();
    // best[n][b], arg[n][b], flattened with stride S.
    std::vector<double> best((N + 1) * S, inf);
    std::vector<int64_t> arg((N + 1) * S, -1);
    best[0] = 0.0;
    for (int64_t n = 0; n < N; ++n) {
        const T* c = cost + n * S * S;
        // Clip n starts at a >= n*min_units and must leave room for the N-n-1 clips after it.
        const int64_t a_lo = n * min_units;
        const int64_t b_hi = G - (N - n - 1) * min_units;
        for (int64_t b = a_lo + min_units; b <= b_hi; ++b) {
            double m = inf;
            int64_t am = -1;
            for (int64_t a = a_lo; a <= b - min_units; ++a) {
                const double prev = best[n * S + a];
                if (prev == inf) continue;
                const double total = prev + static_cast<double>(c[a * S + b]);
                if (total < m) {
                    m = total;
                    am = a;
                }
            }
            best[(n + 1) * S + b] = m;
            arg[(n + 1) * S + b] = am;
        }
    }
    if (!std::isfinite(best[N * S + G])) {
        // Only reachable when finite float64 costs near 1e308 overflow when summed.
        throw std::invalid_argument(where + "the partition cost overflows float64; rescale the costs");
    }
    Result r;
    r.cost = best[N * S + G];
    r.bounds.assign(N + 1, 0);
    r.bounds[N] = G;
    for (int64_t n = N; n > 0; --n) r.bounds[n - 1] = arg[n * S + r.bounds[n]];
    return r;
}

Result solve(const Table& t, int64_t min_units, const std::string& where) {
    if (min_units < 1) {
        throw std::invalid_argument("min_units must be >= 1, got " + std::to_string(min_units));
    }
    return t.is_double ? solve_typed(static_cast<const double*>(t.data), t.N, t.G, min_units, where)
                       : solve_typed(static_cast<const float*>(t.data), t.N, t.G, min_units, where);
}

py::tuple to_python(Result&& r) {
    py::array_t<int64_t> bounds(static_cast<py::ssize_t>(r.bounds.size()));
    std::copy(r.bounds.begin(), r.bounds.end(), bounds.mutable_data());
    return py::make_tuple(bounds, r.cost);
}

// One table: returns (bounds int64 [N+1], cost float).
py::tuple optimal_partition(const py::array& cost, int64_t min_units) {
    Table t = describe(cost, "");
    Result r;
    {
        py::gil_scoped_release release;
        r = solve(t, min_units, "");
    }
    return to_python(std::move(r));
}

// Many tables (any mix of N and G) solved on `num_threads` threads with the GIL released.
std::vector<py::tuple> optimal_partition_batch(const py::list& costs, int64_t min_units,
                                               int64_t num_threads) {
    const size_t B = costs.size();
    std::vector<Table> tables(B);
    std::vector<py::array> keep_alive(B);  // the arrays must outlive the GIL-free section
    for (size_t i = 0; i < B; ++i) {
        const std::string where = "costs[" + std::to_string(i) + "]: ";
        if (!py::isinstance<py::array>(costs[i])) {
            throw std::invalid_argument(where + "expected a numpy array");
        }
        keep_alive[i] = costs[i].cast<py::array>();
        tables[i] = describe(keep_alive[i], where);
    }
    if (min_units < 1) {
        throw std::invalid_argument("min_units must be >= 1, got " + std::to_string(min_units));
    }
    std::vector<Result> results(B);
    std::string error;
    {
        py::gil_scoped_release release;
        int64_t hw = static_cast<int64_t>(std::thread::hardware_concurrency());
        int64_t T = num_threads > 0 ? num_threads : std::max<int64_t>(1, hw);
        T = std::max<int64_t>(1, std::min<int64_t>(T, static_cast<int64_t>(B)));
        std::atomic<size_t> next{0};
        std::atomic<bool> failed{false};
        std::mutex error_mutex;
        size_t first_bad = B;
        constexpr size_t kChunk = 256;  // tables per grab: amortises the atomic, balances load
        auto worker = [&]() {
            while (!failed.load(std::memory_order_relaxed)) {
                const size_t start = next.fetch_add(kChunk);
                if (start >= B) break;
                const size_t stop = std::min(B, start + kChunk);
                for (size_t i = start; i < stop; ++i) {
                    try {
                        results[i] = solve(tables[i], min_units,
                                           "costs[" + std::to_string(i) + "]: ");
                    } catch (const std::exception& e) {
                        std::lock_guard<std::mutex> lock(error_mutex);
                        if (i < first_bad) {  // report the lowest bad index seen
                            first_bad = i;
                            error = e.what();
                        }
                        failed.store(true);
                        break;
                    }
                }
            }
        };
        if (T == 1) {
            worker();
        } else {
            std::vector<std::thread> pool;
            pool.reserve(T);
            for (int64_t k = 0; k < T; ++k) pool.emplace_back(worker);
            for (auto& th : pool) th.join();
        }
    }
    if (!error.empty()) throw std::invalid_argument(error);
    std::vector<py::tuple> out;
    out.reserve(B);
    for (auto& r : results) out.push_back(to_python(std::move(r)));
    return out;
}

}  // namespace

PYBIND11_MODULE(_partition, m) {
    m.doc() = "C++ dynamic program for MATE's optimal temporal segmentation (Eq. 1).";
    m.def("optimal_partition", &optimal_partition, py::arg("cost"), py::arg("min_units") = 1,
          "Optimal partition of one C-contiguous float32/float64 table [N, G+1, G+1]. "
          "Returns (bounds int64 [N+1], cost float).");
    m.def("optimal_partition_batch", &optimal_partition_batch, py::arg("costs"),
          py::arg("min_units") = 1, py::arg("num_threads") = 0,
          "Optimal partitions of a list of tables on num_threads threads (0 = all cores), GIL "
          "released. Returns a list of (bounds, cost).");
}
