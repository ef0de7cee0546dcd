/* SPDX-License-Identifier: MIT */
/* Sample devices: filled in with the VMState core. */
int ferry_bench_placeholder_(void);
int ferry_bench_placeholder_(void)
{
	return 0;
}
