package steer

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I../include" -target bpfel -type orig_dst -type tuple steer steer.c
