/* What MPI linked into the C++ module would pay per batch (bench/bench_distributed.py): the sync
 * (an allreduce of ranks x 8 doubles), the weighting of the gradient and its in-place gradient allreduce of n floats, blocking,
 * from C. Prints the median microseconds per batch on rank 0.
 *   mpicc -O2 -o allreduce bench/mpi_allreduce.c && mpirun -np 2 ./allreduce 537354 300 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int by_value(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const long n = argc > 1 ? atol(argv[1]) : 537354;
  const int repeats = argc > 2 ? atoi(argv[2]) : 300;
  float* grad = malloc(sizeof(float) * n);
  double* table = calloc((size_t)size * 8, sizeof(double));
  double* sums = calloc((size_t)size * 8, sizeof(double));
  double* times = malloc(sizeof(double) * repeats);
  for (long i = 0; i < n; ++i) grad[i] = (float)(i % 97) * 1e-3f;
  for (int r = -10; r < repeats; ++r) {  /* 10 warm-up batches */
    MPI_Barrier(MPI_COMM_WORLD);
    const double t = MPI_Wtime();
    table[rank * 8 + 1] = 64;
    MPI_Allreduce(table, sums, size * 8, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    for (long i = 0; i < n; ++i) grad[i] *= 0.5f; /* this rank's share of the batch, as the hook weighs it */
    MPI_Allreduce(MPI_IN_PLACE, grad, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    if (r >= 0) times[r] = MPI_Wtime() - t;
  }
  qsort(times, repeats, sizeof(double), by_value);
  if (rank == 0) printf("%.1f us per batch (median of %d; %ld floats, %d ranks)\n", times[repeats / 2] * 1e6, repeats, n, size);
  free(grad), free(table), free(sums), free(times);
  MPI_Finalize();
  return 0;
}
