from i2i.cli.app import main

if __name__ == "__main__":
    main()
