from fleetcore.cli.main import main

main()
