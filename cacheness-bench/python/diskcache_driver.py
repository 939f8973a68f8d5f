"""diskcache driver for cacheness-bench: the same workloads, timed the same way.

Run by the harness as `python diskcache_driver.py '<request json>'`; prints one
JSON object `{"samples": [{metric: value, ...}, ...]}`, one sample per
repetition. Metric names match the Rust harness (put_ops_s, get_ops_s, list_ms,
put_p50_us, ...). Only the standard library and diskcache are used.

Fairness: `diskcache.Cache(directory)` with every default, as a user opens it;
the keys are the 32-hex cache keys the Rust rows use (read from the file the
request names, one per line, item i on line i); the value is the same record as
a dict (diskcache pickles it, as it would for a user). Only the loops are
timed; the per-operation clock reads cost well under 1 % of an operation.
Every repetition gets a directory of its own, kept until the harness deletes
all of a run's directories at its end.
"""

import json
import multiprocessing
import os
import random
import sys
import threading
import time

import diskcache


def record(idx):
    """The seed workload's value: id, short name, 20 integers (~200 bytes JSON)."""
    return {
        "id": idx,
        "name": "experiment-%06d" % idx,
        "values": [1_000_000 + idx * 31 + slot * 7 for slot in range(20)],
    }


def load_keys(request):
    """The harness's 32-hex cache keys, item i at index i."""
    with open(request["keys_file"]) as keys:
        return keys.read().split()


def percentile_us(latencies, quantile):
    ordered = sorted(latencies)
    index = min(len(ordered) - 1, int(quantile * len(ordered)))
    return ordered[index] * 1e6


def fresh(base, name):
    path = os.path.join(base, name)
    os.makedirs(path)
    return path


def w1(request):
    n = request["n"]
    records = [record(i) for i in range(n)]
    keys = load_keys(request)[:n]
    samples = []
    for rep in range(request["reps"]):
        cache = diskcache.Cache(fresh(request["dir"], "w1-%d" % rep))
        put_latency = []
        started = time.perf_counter()
        for k, value in zip(keys, records):
            op = time.perf_counter()
            cache.set(k, value)
            put_latency.append(time.perf_counter() - op)
        put_s = time.perf_counter() - started
        get_latency = []
        started = time.perf_counter()
        for i, (k, expected) in enumerate(zip(keys, records)):
            op = time.perf_counter()
            value = cache.get(k)
            get_latency.append(time.perf_counter() - op)
            if value != expected:
                raise SystemExit("wrong value for item %d" % i)
        get_s = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(5):
            listed = list(cache.iterkeys())
            if len(listed) != n:
                raise SystemExit("listed %d of %d entries" % (len(listed), n))
        list_ms = (time.perf_counter() - started) * 1e3 / 5
        cache.close()
        samples.append({
            "put_ops_s": n / put_s,
            "get_ops_s": n / get_s,
            "list_ms": list_ms,
            "put_p50_us": percentile_us(put_latency, 0.5),
            "put_p99_us": percentile_us(put_latency, 0.99),
            "get_p50_us": percentile_us(get_latency, 0.5),
            "get_p99_us": percentile_us(get_latency, 0.99),
        })
    return samples


def w5_threads(request):
    threads, count, ops = request["threads"], request["keys"], request["ops"]
    keys = load_keys(request)[:count]
    per_thread = ops // threads
    samples = []
    for rep in range(request["reps"]):
        cache = diskcache.Cache(fresh(request["dir"], "w5t-%d" % rep))
        for i, k in enumerate(keys):
            cache.set(k, record(i))
        errors = []
        barrier = threading.Barrier(threads + 1)

        def worker(seed):
            rng = random.Random(seed)
            plan = [(rng.randrange(10) == 0, rng.randrange(count)) for _ in range(per_thread)]
            barrier.wait()
            for is_put, i in plan:
                if is_put:
                    cache.set(keys[i], record(i))
                elif cache.get(keys[i]) != record(i):
                    errors.append(i)

        workers = [threading.Thread(target=worker, args=(t + 1,)) for t in range(threads)]
        for thread in workers:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in workers:
            thread.join()
        elapsed = time.perf_counter() - started
        cache.close()
        if errors:
            raise SystemExit("wrong value for item %d" % errors[0])
        samples.append({"ops_s": per_thread * threads / elapsed})
    return samples


def writer(path, keys, first, count, times):
    cache = diskcache.Cache(path)
    start = time.time()
    for i in range(first, first + count):
        cache.set(keys[i], record(i))
    times.put((start, time.time()))
    cache.close()


def w5_processes(request):
    processes, each = request["processes"], request["keys_each"]
    keys = load_keys(request)[: processes * each]
    samples = []
    for rep in range(request["reps"]):
        path = fresh(request["dir"], "w5p-%d" % rep)
        diskcache.Cache(path).close()
        times = multiprocessing.Queue()
        workers = [
            multiprocessing.Process(target=writer, args=(path, keys, w * each, each, times))
            for w in range(processes)
        ]
        for process in workers:
            process.start()
        spans = [times.get() for _ in workers]
        for process in workers:
            process.join()
        cache = diskcache.Cache(path)
        lost = wrong = 0
        for i in range(processes * each):
            value = cache.get(keys[i])
            if value is None:
                lost += 1
            elif value != record(i):
                wrong += 1
        cache.close()
        elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
        samples.append({
            "put_ops_s": processes * each / elapsed,
            "lost_count": lost,
            "wrong_count": wrong,
        })
    return samples


def main():
    request = json.loads(sys.argv[1])
    workloads = {"w1": w1, "w5-threads": w5_threads, "w5-processes": w5_processes}
    samples = workloads[request["workload"]](request)
    json.dump({"samples": samples, "diskcache": diskcache.__version__}, sys.stdout)


if __name__ == "__main__":
    main()
