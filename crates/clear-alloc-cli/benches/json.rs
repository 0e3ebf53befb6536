//! The JSON program's own work at 1 000 000 and 100 000 queries (the seeded request of
//! `support`: heterogeneous shifted surges, 300 tokens per query), split as the
//! program does it: reading the request, allocating, writing the response (compact,
//! and indented as with `--pretty`), and the three together. Beside the reading, the
//! derived parser of the public `AllocationRequest` with the JSON path tracked (how
//! the program read requests before), as a baseline in the same run. What is read or
//! allocated is freed outside the timing (the program leaves it to its exit); the
//! whole run frees it inside.
//!
//! ```text
//! cargo bench -p clear-alloc-cli --bench json
//! ```

mod support;

use std::hint::black_box;
use std::io::{sink, BufWriter};

use clear_alloc_cli::allocate::{read_request, write_allocate, AllocateOptions};
use clear_alloc_cli::wire::AllocationRequest;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn json(c: &mut Criterion) {
    let mut group = c.benchmark_group("json");
    group.sample_size(10);
    let options = AllocateOptions::default();
    for n in [100_000, 1_000_000] {
        let input = support::heterogeneous_request(n);
        let input = input.as_bytes();
        group.bench_with_input(BenchmarkId::new("read", n), input, |b, input| {
            b.iter_with_large_drop(|| read_request(black_box(input), &options).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("read_derived", n), input, |b, input| {
            b.iter_with_large_drop(|| {
                let mut deserializer = serde_json::Deserializer::from_slice(black_box(input));
                serde_path_to_error::deserialize::<_, AllocationRequest>(&mut deserializer).unwrap()
            })
        });
        let request = read_request(input, &options).unwrap();
        group.bench_with_input(BenchmarkId::new("allocate", n), &request, |b, request| {
            b.iter_with_large_drop(|| request.allocate().unwrap())
        });
        let allocation = request.allocate().unwrap();
        for (name, pretty) in [("write", false), ("write_pretty", true)] {
            group.bench_with_input(BenchmarkId::new(name, n), &allocation, |b, allocation| {
                b.iter(|| {
                    let out = BufWriter::with_capacity(1 << 16, sink());
                    request.write_response(allocation, pretty, out).unwrap()
                })
            });
        }
        group.bench_with_input(BenchmarkId::new("whole", n), input, |b, input| {
            b.iter(|| {
                let out = BufWriter::with_capacity(1 << 16, sink());
                write_allocate(black_box(input), &options, out).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, json);
criterion_main!(benches);
