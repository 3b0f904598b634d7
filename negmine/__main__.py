from negmine.cli import main

main()
