from fleetcore.cli.entry import main

main()
