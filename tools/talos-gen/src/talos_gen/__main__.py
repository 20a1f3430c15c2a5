from talos_gen.cli import entry

entry()
