"""Precision modes, the ISA they may use, and the proof of what the kernels ran: oneDNN and MKL
verbose, the kernel census, each mode's roofline."""
