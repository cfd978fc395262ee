#include <cstdio>
int main() { std::puts("msatrain"); return 0; }
