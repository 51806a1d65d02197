"""`hrm bench`: training and evaluation throughput, peak memory and model FLOP utilisation (MFU) of a config.

A tool above the library layers (it uses models, data, train and eval): `measure` times the steps, `table`
writes BENCHMARKS.md rows, `cli` registers the command.
"""
