echo Hello Promptflow!
