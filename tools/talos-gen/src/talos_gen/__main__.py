from talos_gen.cli import console

console()
