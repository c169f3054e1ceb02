/* Divergence target: what it does after getrandom depends on the random byte, so a log whose
 * recorded byte is changed makes replay take the other branch (different output syscall). */
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>

int main(void) {
    unsigned char b = 0;
    if (getrandom(&b, 1, 0) != 1)
        return 1;
    if (b & 1) {
        const char odd[] = "odd\n";
        write(1, odd, sizeof odd - 1);
    } else {
        const char even[] = "even!\n";
        write(1, even, sizeof even - 1);
    }
    return 0;
}
