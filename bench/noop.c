/* bench/noop.c - a libc-only program that returns at once: with
 * `gpubalance --version`, it measures the dynamic loader's share of a
 * cold `gpubalance` run. */
int main(void)
{
    return 0;
}
