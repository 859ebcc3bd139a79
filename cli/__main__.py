from tfship.cli import main

main()
