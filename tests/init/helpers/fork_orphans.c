/* Helper service: double-fork N grandchildren that exit at once (orphans for PID 1 to reap).
   Prints "orphans N done" once every grandchild has exited: the shared pipe reaches EOF only
   when the last holder of its write end is gone. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    int n = atoi(argv[1]); int p[2]; char c;
    if (pipe(p)) return 1;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) return 2;
        if (pid == 0) { if (fork() == 0) _exit(0); _exit(0); }
        waitpid(pid, NULL, 0);
    }
    close(p[1]);
    while (read(p[0], &c, 1) > 0) ;
    printf("orphans %d done\n", n); fflush(stdout);
    return 0;
}
