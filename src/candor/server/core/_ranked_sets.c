/* One pass per row for served prediction sets: rank the row's probabilities, score each rank, keep the set.
 *
 * The numpy path in candor.server.core.sets does the same in six to eight array calls per request, and under
 * load each call costs a request several microseconds whatever its size (docs/benchmarks.md); this is one
 * call. The running sum is taken in row order in double, as the offline scores' np.cumsum takes it (built
 * with -ffp-contract=off, so no fused multiply-add rounds it differently); tests/server/test_served_sets.py
 * holds the sets it serves to the numpy path's and to the offline ones. Python side:
 * candor.server.core.ranked_sets.
 *
 * ranked_sets(probs, n, k, a, b, rank_offset, rank_limit, class_limit, prefix, top, order, ranked, sizes, classes,
 *             size_counts) -> total
 *
 *   probs        float32 [n, k], C order: the served probabilities
 *   a, b         the score of rank r (0-based, most probable first) is a * x_r + b * (x_0 + ... + x_r),
 *                x the row's probabilities sorted from the largest, ties to the lower class (a stable sort)
 *   rank_offset, rank_limit  float64 [k]; class_limit float64 [k]
 *                rank r, holding class c, is in the set when score_r + rank_offset[r] <= rank_limit[r] + class_limit[c]
 *   prefix       nonzero when the caller knows the sets are prefixes of the ranking (a <= 0, b >= 0, offsets zero,
 *                rank_limit not rising, class_limit constant): a row of nonnegative values is then ranked only
 *                until its set has ended and its top ranks are written, by selecting each next largest value
 *   top          how many ranks per row to write into order and ranked (the request's top-k; 0 to k)
 *   order        int32 [n, top] out: each row's first classes by falling probability
 *   ranked       float32 [n, top] out: their probabilities
 *   sizes        int32 [n] out: each row's set size
 *   classes      int32 [n * k] out: the sets' classes, row after row, most probable first; the first `total` hold them
 *   size_counts  int64 [k + 1], added to: how many rows had a set of each size (the served-size histogram)
 *
 * Every buffer's length is checked against n, k and top before anything is read or written (ValueError otherwise).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Rows at most this wide are sorted by insertion (no scratch); wider ones by merging, whose k log k comparisons
 * beat insertion's k * k / 4 moves somewhere past it (256 rows: insertion ahead at 64 classes, merging at 128). */
#define NARROW_MAX 64
/* Work (n * k) from which the loop runs without the GIL: below it, taking the GIL back costs more than it frees. */
#define RELEASE_GIL_FROM 65536

/* A wide row: bottom-up merge sort of (value, class) pairs by falling value, straight into the outputs, with a
 * scratch pair of the row's width; a merge takes from the left on equal values (the stable order). */
static void merge_sort_row(const float *row, int32_t *order, float *ranked, int32_t *scratch_order,
                           float *scratch_ranked, Py_ssize_t k) {
    for (Py_ssize_t j = 0; j < k; j++) {
        order[j] = (int32_t)j;
        ranked[j] = row[j];
    }
    int32_t *src_o = order, *dst_o = scratch_order;
    float *src_r = ranked, *dst_r = scratch_ranked;
    for (Py_ssize_t width = 1; width < k; width *= 2) {
        for (Py_ssize_t lo = 0; lo < k; lo += 2 * width) {
            Py_ssize_t mid = lo + width < k ? lo + width : k;
            Py_ssize_t hi = lo + 2 * width < k ? lo + 2 * width : k;
            Py_ssize_t left = lo, right = mid, out = lo;
            while (left < mid && right < hi) {
                Py_ssize_t take = src_r[left] >= src_r[right] ? left++ : right++;
                dst_o[out] = src_o[take];
                dst_r[out++] = src_r[take];
            }
            for (; left < mid; left++, out++) {
                dst_o[out] = src_o[left];
                dst_r[out] = src_r[left];
            }
            for (; right < hi; right++, out++) {
                dst_o[out] = src_o[right];
                dst_r[out] = src_r[right];
            }
        }
        int32_t *swap_o = src_o;
        src_o = dst_o;
        dst_o = swap_o;
        float *swap_r = src_r;
        src_r = dst_r;
        dst_r = swap_r;
    }
    if (src_o != order) {
        memcpy(order, src_o, (size_t)k * sizeof(int32_t));
        memcpy(ranked, src_r, (size_t)k * sizeof(float));
    }
}

/* A narrow row: insertion sort straight into the outputs, a later equal value stopping behind an earlier one (the
 * stable order). Counting each class's rank without branches (k * k comparisons) was tried and took twice as long
 * at 10 classes. Any row, NaN included, comes out a permutation of its classes. */
static void insertion_sort_row(const float *row, int32_t *order, float *ranked, Py_ssize_t k) {
    for (Py_ssize_t m = 0; m < k; m++) {
        float x = row[m];
        Py_ssize_t j = m;
        while (j > 0 && ranked[j - 1] < x) {
            ranked[j] = ranked[j - 1];
            order[j] = order[j - 1];
            j--;
        }
        ranked[j] = x;
        order[j] = (int32_t)m;
    }
}

/* The next largest value of work[r..k) moved to rank r (ties to the lower class, whose index may now sit later). */
static void select_next(int32_t *work_order, float *work_ranked, Py_ssize_t r, Py_ssize_t k) {
    Py_ssize_t best = r;
    float best_value = work_ranked[r];
    int32_t best_class = work_order[r];
    for (Py_ssize_t j = r + 1; j < k; j++) {
        float v = work_ranked[j];
        int32_t c = work_order[j];
        if (v > best_value || (v == best_value && c < best_class)) {
            best = j;
            best_value = v;
            best_class = c;
        }
    }
    work_order[best] = work_order[r];
    work_ranked[best] = work_ranked[r];
    work_order[r] = best_class;
    work_ranked[r] = best_value;
}

typedef struct {
    Py_ssize_t n, k, top;
    double a, b;
    const double *rank_offset, *rank_limit, *class_limit;
    int prefix;
} Rule;

/* work: 2 * k int32 and 2 * k float32 (a row's ranking, and the merge sort's scratch); counts: k + 1 int64. */
static Py_ssize_t run(const Rule *rule, const float *probs, int32_t *order, float *ranked, int32_t *sizes,
                      int32_t *classes, int64_t *counts, int32_t *work_order, float *work_ranked) {
    const Py_ssize_t k = rule->k, top = rule->top;
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < rule->n; i++) {
        const float *row = probs + i * k;
        double running = 0.0;
        int32_t size = 0;
        int nonnegative = 1;  /* NaN fails too */
        if (rule->prefix) {  /* copied to rank from, and the largest value (the first of equals) found on the way */
            Py_ssize_t largest = 0;
            for (Py_ssize_t j = 0; j < k; j++) {
                float v = row[j];
                work_order[j] = (int32_t)j;
                work_ranked[j] = v;
                nonnegative &= v >= 0.0f;
                if (v > row[largest]) largest = j;
            }
            work_order[largest] = 0;
            work_ranked[largest] = row[0];
            work_order[0] = (int32_t)largest;
            work_ranked[0] = row[largest];
        }
        if (rule->prefix && nonnegative) {
            /* Sets are prefixes and scores only rise along the ranking: select ranks one by one, stop once the
             * set has ended and the top ranks are known. A confident row costs two scans instead of a sort. */
            int open = 1;
            for (Py_ssize_t r = 0; r < k && (open || r < top); r++) {
                if (r > 0) select_next(work_order, work_ranked, r, k);
                int32_t c = work_order[r];
                double x = (double)work_ranked[r];
                running += x;
                if (open && rule->a * x + rule->b * running + rule->rank_offset[r] <= rule->rank_limit[r] + rule->class_limit[c]) {
                    classes[total++] = c;
                    size++;
                } else {
                    open = 0;
                }
            }
        } else {
            if (k <= NARROW_MAX) {
                insertion_sort_row(row, work_order, work_ranked, k);
            } else {
                merge_sort_row(row, work_order, work_ranked, work_order + k, work_ranked + k, k);
            }
            for (Py_ssize_t r = 0; r < k; r++) {
                int32_t c = work_order[r];
                double x = (double)work_ranked[r];
                running += x;
                if (rule->a * x + rule->b * running + rule->rank_offset[r] <= rule->rank_limit[r] + rule->class_limit[c]) {
                    classes[total++] = c;
                    size++;
                }
            }
        }
        for (Py_ssize_t r = 0; r < top; r++) {  /* usually one or a few: a loop, not a call to memcpy */
            order[i * top + r] = work_order[r];
            ranked[i * top + r] = work_ranked[r];
        }
        sizes[i] = size;
        counts[size]++;
    }
    return total;
}

static int check_length(const Py_buffer *view, Py_ssize_t items, Py_ssize_t item_size, const char *name) {
    if (view->len != items * item_size) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, expected %zd (%zd items of %zd bytes)", name, view->len,
                     items * item_size, items, item_size);
        return 0;
    }
    return 1;
}

static PyObject *ranked_sets(PyObject *self, PyObject *args) {
    Py_buffer probs, rank_offset, rank_limit, class_limit, order, ranked, sizes, classes, size_counts;
    Rule rule;
    if (!PyArg_ParseTuple(args, "y*nnddy*y*y*inw*w*w*w*w*:ranked_sets", &probs, &rule.n, &rule.k, &rule.a, &rule.b,
                          &rank_offset, &rank_limit, &class_limit, &rule.prefix, &rule.top, &order, &ranked, &sizes,
                          &classes, &size_counts))
        return NULL;
    rule.rank_offset = rank_offset.buf;
    rule.rank_limit = rank_limit.buf;
    rule.class_limit = class_limit.buf;
    const Py_ssize_t n = rule.n, k = rule.k, top = rule.top;
    PyObject *result = NULL;
    void *work = NULL;
    int64_t *counts = NULL;
    if (n < 0 || k < 1 || n > PY_SSIZE_T_MAX / k / 8 || top < 0 || top > k) {
        PyErr_Format(PyExc_ValueError, "need n >= 0 rows, k >= 1 classes and 0 <= top <= k, got n=%zd, k=%zd, top=%zd",
                     n, k, top);
        goto done;
    }
    if (!(check_length(&probs, n * k, 4, "probs") && check_length(&rank_offset, k, 8, "rank_offset") &&
          check_length(&rank_limit, k, 8, "rank_limit") && check_length(&class_limit, k, 8, "class_limit") &&
          check_length(&order, n * top, 4, "order") && check_length(&ranked, n * top, 4, "ranked") &&
          check_length(&sizes, n, 4, "sizes") && check_length(&classes, n * k, 4, "classes") &&
          check_length(&size_counts, k + 1, 8, "size_counts")))
        goto done;
    /* This call's histogram is counted apart and added at the end, with the GIL held: a loop that ran without it
     * never writes memory another thread may read. */
    work = PyMem_RawMalloc((size_t)k * 2 * (sizeof(int32_t) + sizeof(float)));
    counts = PyMem_RawCalloc((size_t)k + 1, sizeof(int64_t));
    if (work == NULL || counts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int32_t *work_order = work;
    float *work_ranked = (float *)(work_order + 2 * k);
    Py_ssize_t total;
    if (n * k >= RELEASE_GIL_FROM) {
        Py_BEGIN_ALLOW_THREADS
        total = run(&rule, probs.buf, order.buf, ranked.buf, sizes.buf, classes.buf, counts, work_order, work_ranked);
        Py_END_ALLOW_THREADS
    } else {
        total = run(&rule, probs.buf, order.buf, ranked.buf, sizes.buf, classes.buf, counts, work_order, work_ranked);
    }
    int64_t *histogram = size_counts.buf;
    for (Py_ssize_t j = 0; j <= k; j++) histogram[j] += counts[j];
    result = PyLong_FromSsize_t(total);
done:
    PyMem_RawFree(work);
    PyMem_RawFree(counts);
    PyBuffer_Release(&probs);
    PyBuffer_Release(&rank_offset);
    PyBuffer_Release(&rank_limit);
    PyBuffer_Release(&class_limit);
    PyBuffer_Release(&order);
    PyBuffer_Release(&ranked);
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&classes);
    PyBuffer_Release(&size_counts);
    return result;
}

static PyMethodDef methods[] = {
    {"ranked_sets", ranked_sets, METH_VARARGS,
     "ranked_sets(probs, n, k, a, b, rank_offset, rank_limit, class_limit, prefix, top, order, ranked, sizes, classes, "
     "size_counts) -> total\n\nRank each row, score each rank, write the sets; see candor.server.core.ranked_sets."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ranked_sets",
                                    "Served prediction sets in one pass per row (candor.server.core.ranked_sets).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__ranked_sets(void) { return PyModule_Create(&module); }
