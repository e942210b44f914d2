print("tgsess")
