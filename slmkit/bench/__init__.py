"""Efficiency benchmarks on this machine: latency, throughput, memory (``latency``), the memory-bandwidth
limit of decoding (``bandwidth``), result files and plots (``report``), the ``slmkit bench`` command
(``cli``) and the ``efficiency`` recipe stage (``stage``)."""
